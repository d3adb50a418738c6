//! AFL++ target `range`: see [`portcullis_fuzz::range`] for the input format and invariants.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        portcullis_fuzz::range(data);
    });
}
