//! The command line (DESIGN.md "Command line"): `serve`, `check`, `passwd`, `certs`.
//! Every failure is one sentence on stderr and exit code 1.

use crate::auth::htpasswd;
use crate::config::Config;
use clap::{Parser, Subcommand};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Secure front door for private container registries"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Configuration file.
    #[arg(
        short = 'c',
        long = "config",
        env = "PORTCULLIS_CONFIG",
        default_value = "proxy.toml"
    )]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ConfigArg),
    /// Validate configuration, certificates and htpasswd; one line per problem.
    Check(ConfigArg),
    /// Manage users in the htpasswd file.
    Passwd {
        #[command(subcommand)]
        action: Passwd,
    },
    /// Garbage-collect the bundled registry's storage: delete blobs no manifest
    /// references and that are older than `[registry.gc] grace` (default 1h). Safe
    /// while the registry serves (any number of instances on the same storage).
    Gc {
        #[command(flatten)]
        config: ConfigArg,
        /// Say what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also remove manifests no tag points at (kept: an index's children and the
        /// referrers of kept manifests), and the blobs only they referenced.
        #[arg(long)]
        delete_untagged: bool,
    },
    /// Create a private CA and a server certificate signed by it.
    Certs {
        /// Output folder for ca.crt, ca.key, server.crt, server.key.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Host name or IP address for the certificate (repeat for more).
        #[arg(long = "host", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        hosts: Vec<String>,
        /// Replace an existing server certificate and key.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct FileArg {
    /// htpasswd file (default: [auth] htpasswd of the configuration, else auth/htpasswd).
    #[arg(long)]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, Subcommand)]
pub enum Passwd {
    /// Add a user or replace their password (bcrypt).
    Add {
        user: String,
        #[command(flatten)]
        file: FileArg,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// bcrypt cost (4-31); each +1 doubles the work. Verified passwords are cached,
        /// so a high cost is paid once per client, not per request.
        #[arg(long, default_value_t = 10)]
        cost: u32,
    },
    /// Remove a user.
    Remove {
        user: String,
        #[command(flatten)]
        file: FileArg,
    },
    /// List users.
    List {
        #[command(flatten)]
        file: FileArg,
    },
    /// Check a user's password (exit 0 if it matches).
    Verify {
        user: String,
        #[command(flatten)]
        file: FileArg,
        #[arg(long)]
        password_stdin: bool,
    },
}

/// A user-facing failure: printed as one line, exit code 1.
#[derive(Debug)]
pub struct Failure(pub String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure(e.to_string())
    }
}

/// Install the log subscriber: `RUST_LOG` or info, to stderr.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Run a parsed command line.
pub fn main(cli: Cli) -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let result = match cli.command {
        Command::Serve(c) => serve(&c.config),
        Command::Check(c) => check(&c.config),
        Command::Passwd { action } => passwd::passwd(action),
        Command::Certs { out, hosts, force } => certs(&out, &hosts, force),
        Command::Gc {
            config,
            dry_run,
            delete_untagged,
        } => gc(&config.config, dry_run, delete_untagged),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            let mut err = std::io::stderr().lock();
            for line in msg.lines() {
                let _ = writeln!(err, "portcullis: {line}");
            }
            ExitCode::from(1)
        }
    }
}

/// The runtime's blocking pool for `serve` (see there).
const BLOCKING_THREADS: usize = 64;

fn serve(path: &Path) -> Result<(), Failure> {
    init_tracing();
    let config = preflight(path)?.config;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // File reads and writes hop to this pool one short call at a time; tokio's
        // 512 lets hundreds of concurrent downloads start a thread each (a stack and
        // its share of malloc's arenas resident per thread: ~20 KiB per download held,
        // bench/results/memory.md). 64 calls at once keep any disk busy.
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
        .map_err(|e| Failure(format!("cannot start the runtime: {e}")))?;
    rt.block_on(async move {
        let listen = config.server.listen.clone();
        let metrics_listen = config.metrics_listen;
        if let Some(password) = crate::app::ensure_htpasswd(&config).map_err(Failure)? {
            // Printed once, to the terminal only: it is stored nowhere in the clear.
            eprintln!(
                "\n  Created {} with user \"admin\" and password: {password}\n  Log in with: docker login -u admin {}:{}\n  Add users with: portcullis passwd add NAME\n",
                config.auth.htpasswd.display(),
                config.tls.hosts.first().map(String::as_str).unwrap_or("localhost"),
                listen.first().map(|a| a.port()).unwrap_or(5443),
            );
        }
        let state = crate::state::State::build(config)?;
        let listeners = match crate::systemd::inherited_listeners()
            .map_err(|e| Failure(format!("socket activation (LISTEN_FDS): {e}")))?
        {
            Some(l) => {
                tracing::info!(count = l.len(), "using listeners from systemd socket activation");
                l
            }
            None => {
                let mut ls = Vec::new();
                for addr in &listen {
                    let l = bind(*addr).map_err(|e| {
                        Failure(format!(
                            "{}: server.listen: cannot listen on {addr}: {}",
                            path.display(),
                            crate::files::io_error_words(&e)
                        ))
                    })?;
                    ls.push(l);
                }
                ls
            }
        };
        let metrics_listener = match metrics_listen {
            Some(addr) => Some(bind(addr).map_err(|e| {
                Failure(format!(
                    "{}: metrics.listen: cannot listen on {addr}: {}",
                    path.display(),
                    crate::files::io_error_words(&e)
                ))
            })?),
            None => None,
        };
        let status = crate::app::status_line(&state);
        let shared = crate::app::shared(state);
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        if let Some(l) = metrics_listener {
            tokio::spawn(crate::admin::serve(l, shared.clone(), async move {
                let _ = metrics_stopped.await;
            }));
        }
        // Before READY: systemd may send SIGHUP the moment it reads READY=1.
        let signals = crate::app::Signals::install()
            .map_err(|e| Failure(format!("cannot install signal handlers: {e}")))?;
        tracing::info!(%status, "portcullis ready");
        crate::systemd::notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ]);
        crate::systemd::start_watchdog();
        crate::app::run(
            shared.clone(),
            listeners,
            crate::app::until_stopped(path.to_path_buf(), shared, signals),
        )
        .await;
        let _ = stop_metrics.send(());
        crate::access_log::flush();
        tracing::info!("stopped");
        Ok(())
    })
}

/// Bind with SO_REUSEADDR (a restart must not wait out TIME_WAIT) and a deep backlog.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// What `check` reports and `serve` starts from: the configuration, loaded once, and
/// what is wrong with the files it names.
pub struct Preflight {
    pub config: Config,
    /// Failures, one line each: `check` exits 1 on any.
    pub problems: Vec<String>,
    /// Advice that is not a failure: one line per htpasswd entry with a weak hash
    /// (apr1, MD5-crypt, {SHA}), saying how to rehash it.
    pub warnings: Vec<String>,
}

/// The preflight `check` and `serve` share. `Err`: the configuration itself does not
/// load (every problem, one line each; both stop there). Then certificates (unless
/// they will be created on start), the htpasswd file and the storage root are looked
/// at. These findings are `check`'s verdict; `serve` goes on from the configuration,
/// creates what a first start creates, and `State::build` refuses (in its own words)
/// only what cannot serve: an htpasswd line it skips is a warning there, as in nginx.
pub fn preflight(path: &Path) -> Result<Preflight, crate::config::Problems> {
    let config = Config::load(path)?;
    Ok(inspect(config))
}

fn inspect(config: Config) -> Preflight {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let t = &config.tls;
    if t.generate_if_missing && !(t.certificate.exists() && t.key.exists()) {
        // Will be created on start: nothing to check yet.
    } else if let Err(e) = crate::tls::load_server_config(&t.certificate, &t.key) {
        problems.push(e.to_string());
    }
    let file = &config.auth.htpasswd;
    match htpasswd::Htpasswd::load(file) {
        Ok(h) => {
            for p in h.problems() {
                problems.push(format!(
                    "{}: line {}: {}",
                    file.display(),
                    p.line,
                    p.message
                ));
            }
            if h.is_empty() {
                problems.push(format!(
                    "{}: no users; add one with: portcullis passwd add NAME",
                    file.display()
                ));
            }
            warnings.extend(
                h.weak_entries()
                    .iter()
                    .map(|w| format!("{}: {w}", file.display())),
            );
            if let Some(policy) = &config.access {
                warnings.extend(policy.advice(&config.path, |u| h.contains(u), file));
            }
        }
        Err(e) => problems.push(format!(
            "{}: auth.htpasswd: cannot read: {}",
            file.display(),
            crate::files::io_error_words(&e)
        )),
    }
    if let crate::config::Backend::Registry(r) = &config.backend {
        // An object store is probed by `check` and by start-up itself (the probe writes).
        if r.object.is_none() {
            if let Err(e) = check_storage(r) {
                problems.push(format!("{}: {e}", config.path.display()));
            }
        }
    }
    Preflight {
        config,
        problems,
        warnings,
    }
}

/// Would the registry's storage serve: `Ok(note)` (what `check` prints about it) or
/// the problem as `key: where: why`.
fn check_storage(r: &crate::config::Registry) -> Result<String, String> {
    let (key, at) = r.location();
    crate::registry::storage::open(r)
        .map_err(|e| crate::app::storage_words(r, &e))
        .and_then(|s| s.check_blocking())
        .map(|note| {
            if note.is_empty() {
                note
            } else {
                format!("{at}: {note}")
            }
        })
        .map_err(|e| format!("{key}: {at}: {e}"))
}

fn check(path: &Path) -> Result<(), Failure> {
    let Preflight {
        config,
        mut problems,
        warnings,
    } = preflight(path)?;
    if let crate::config::Backend::Registry(r) = &config.backend {
        if r.object.is_some() {
            match check_storage(r) {
                Ok(note) => println!("{note}"),
                Err(e) => problems.push(format!("{}: {e}", path.display())),
            }
        }
    }
    // Weak hashes still work (nginx accepts them too), so they are advice on
    // standard output and `check` still succeeds; a deployment that wants them gone
    // can grep for "weak password hash".
    for w in warnings {
        println!("{w}");
    }
    if problems.is_empty() {
        println!("{}: configuration OK", path.display());
        Ok(())
    } else {
        Err(Failure(problems.join("\n")))
    }
}

fn gc(path: &Path, dry_run: bool, delete_untagged: bool) -> Result<(), Failure> {
    use crate::registry::gc;
    init_tracing();
    let config = Config::load(path)?;
    let crate::config::Backend::Registry(r) = &config.backend else {
        return Err(Failure(format!(
            "{}: gc needs the bundled registry ([registry]); this configuration fronts upstreams",
            path.display()
        )));
    };
    let (key, at) = r.location();
    let failed = |e: &crate::registry::storage::StorageError| {
        Failure(format!(
            "{}: {key}: {at}: {}",
            path.display(),
            crate::app::storage_words(r, e)
        ))
    };
    let store = crate::registry::storage::open(r).map_err(|e| failed(&e))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure(format!("cannot start the runtime: {e}")))?;
    let opts = gc::Options {
        dry_run,
        delete_untagged,
        ..gc::Options::new(r.gc_grace)
    };
    let bar = progress::Bar::on_terminal();
    let progress: &dyn gc::Progress = match &bar {
        Some(b) => b,
        None => &progress::Lines,
    };
    let report = rt.block_on(gc::collect(&store, &opts, progress));
    if let Some(b) = &bar {
        b.clear();
    }
    let report = report.map_err(|e| match e {
        gc::GcError::Storage(e) => failed(&e),
        busy => Failure(format!("{}: {key}: {at}: {busy}", path.display())),
    })?;
    let verb = if dry_run { "would delete" } else { "deleted" };
    for (repo, d) in &report.untagged {
        println!("{verb} untagged manifest {repo}@{d}");
    }
    for (d, size) in &report.swept {
        println!("{verb} blob {d} ({size} bytes)");
    }
    println!(
        "{} repositories, {} manifests, {} blobs in use, {} unreferenced but younger than {}, {} vouched for by requests during the collection; {verb} {} untagged manifests and {} blobs, {} freed",
        report.repositories,
        report.manifests,
        report.marked,
        report.young,
        progress::duration(r.gc_grace),
        report.rescued,
        report.untagged.len(),
        report.swept.len(),
        progress::bytes(report.bytes())
    );
    Ok(())
}

mod passwd;
mod progress;

fn certs(out: &Path, hosts: &[String], force: bool) -> Result<(), Failure> {
    let g = crate::certs::generate(&crate::certs::Layout::in_dir(out), hosts, force)?;
    println!(
        "{}: {} CA",
        g.ca_cert.display(),
        if g.new_ca {
            "created"
        } else {
            "reused existing"
        }
    );
    println!(
        "{}: server certificate for {}",
        g.server_cert.display(),
        hosts.join(", ")
    );
    println!("{}: server key (mode 0600)", g.server_key.display());
    println!("Trust the CA: copy {} to /etc/docker/certs.d/HOST:PORT/ca.crt (docker) or /etc/containers/certs.d/HOST:PORT/ca.crt (skopeo, podman)", g.ca_cert.display());
    Ok(())
}
