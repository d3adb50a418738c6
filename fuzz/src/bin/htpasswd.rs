//! AFL++ target `htpasswd`: see [`portcullis_fuzz::htpasswd`] for the input format and invariants.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        portcullis_fuzz::htpasswd(data);
    });
}
