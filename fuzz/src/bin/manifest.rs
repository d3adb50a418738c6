//! AFL++ target `manifest`: see [`portcullis_fuzz::manifest`] for the input format and invariants.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        portcullis_fuzz::manifest(data);
    });
}
