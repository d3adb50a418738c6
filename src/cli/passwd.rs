//! `portcullis passwd`: add, change and remove htpasswd users, as `htpasswd -B` does.

use super::{Failure, FileArg, Passwd};
use crate::auth::htpasswd;
use crate::config::Config;
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

fn htpasswd_path(f: &FileArg) -> PathBuf {
    if let Some(p) = &f.file {
        return p.clone();
    }
    match Config::load(&f.config.config) {
        Ok(c) => c.auth.htpasswd,
        Err(_) => PathBuf::from("auth/htpasswd"),
    }
}

fn read_password(from_stdin: bool, confirm: bool) -> Result<String, Failure> {
    let stdin = std::io::stdin();
    if from_stdin || !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure(format!("cannot read the password from standard input: {e}")))?;
        let pw = line.trim_end_matches(['\n', '\r']).to_string();
        return Ok(pw);
    }
    let pw = rpassword::prompt_password("Password: ")
        .map_err(|e| Failure(format!("cannot read the password: {e}")))?;
    if confirm {
        let again = rpassword::prompt_password("Again: ")
            .map_err(|e| Failure(format!("cannot read the password: {e}")))?;
        if again != pw {
            return Err(Failure("the two passwords differ; nothing changed".into()));
        }
    }
    Ok(pw)
}

fn read_htpasswd_text(path: &Path) -> Result<String, Failure> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(cannot(path, "read")(e)),
    }
}

pub(super) fn passwd(action: Passwd) -> Result<(), Failure> {
    match action {
        Passwd::Add {
            user,
            file,
            password_stdin,
            cost,
        } => {
            htpasswd::valid_user_name(&user).map_err(|e| Failure(format!("user {user:?}: {e}")))?;
            if !(4..=31).contains(&cost) {
                return Err(Failure(format!(
                    "--cost {cost}: bcrypt cost must be 4 to 31"
                )));
            }
            let path = htpasswd_path(&file);
            let password = read_password(password_stdin, true)?;
            if password.is_empty() {
                return Err(Failure("empty password refused; nothing changed".into()));
            }
            let text = read_htpasswd_text(&path)?;
            let hash = htpasswd::hash_bcrypt(&password, cost).map_err(Failure)?;
            let existed = htpasswd::Htpasswd::parse(&text).scheme(&user).is_some();
            let new = htpasswd::upsert(&text, &user, &hash);
            write_htpasswd(&path, &new)?;
            println!(
                "{}: {} user {user}",
                path.display(),
                if existed { "updated" } else { "added" }
            );
            Ok(())
        }
        Passwd::Remove { user, file } => {
            let path = htpasswd_path(&file);
            let text = std::fs::read_to_string(&path).map_err(cannot(&path, "read"))?;
            let (new, removed) = htpasswd::remove(&text, &user);
            if !removed {
                return Err(Failure(format!("{}: no user {user:?}", path.display())));
            }
            write_htpasswd(&path, &new)?;
            println!("{}: removed user {user}", path.display());
            Ok(())
        }
        Passwd::List { file } => {
            let path = htpasswd_path(&file);
            let h = htpasswd::Htpasswd::load(&path).map_err(cannot(&path, "read"))?;
            for u in h.users() {
                println!("{u}");
            }
            for p in h.problems() {
                eprintln!(
                    "portcullis: {}: line {}: {}",
                    path.display(),
                    p.line,
                    p.message
                );
            }
            Ok(())
        }
        Passwd::Verify {
            user,
            file,
            password_stdin,
        } => {
            let path = htpasswd_path(&file);
            let h = htpasswd::Htpasswd::load(&path).map_err(cannot(&path, "read"))?;
            let password = read_password(password_stdin, false)?;
            if h.verify(&user, &password) {
                println!("{}: password for {user} is correct", path.display());
                Ok(())
            } else {
                Err(Failure(format!(
                    "{}: wrong password or unknown user {user:?}",
                    path.display()
                )))
            }
        }
    }
}

/// `file: cannot <verb>: <words>`, the one shape of every file error here.
fn cannot<'a>(path: &'a Path, verb: &'a str) -> impl FnOnce(std::io::Error) -> Failure + 'a {
    move |e| {
        Failure(format!(
            "{}: cannot {verb}: {}",
            path.display(),
            crate::files::io_error_words(&e)
        ))
    }
}

fn write_htpasswd(path: &Path, text: &str) -> Result<(), Failure> {
    crate::auth::write_file(path, text).map_err(cannot(path, "write"))
}
