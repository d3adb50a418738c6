//! AFL++ target `config`: see [`portcullis_fuzz::config`] for the input format and invariants.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        portcullis_fuzz::config(data);
    });
}
