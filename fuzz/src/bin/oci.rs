//! AFL++ target `oci`: see [`portcullis_fuzz::oci`] for the input format and invariants.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        portcullis_fuzz::oci(data);
    });
}
