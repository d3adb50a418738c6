//! The fuzz targets' CI run, inside the ordinary suite: every committed corpus file
//! (`fuzz/corpus/<target>/`) and saved crash (`fuzz/regressions/<target>/`) through
//! its harness, then a short deterministic mutation run over each corpus (bit flips,
//! byte edits, splices of two files; a fixed seed, so a failure reproduces). The
//! harnesses are `fuzz/src/lib.rs` itself, compiled here without AFL++: the
//! coverage-guided runs (`scripts/fuzz.sh`, cargo-afl) need an instrumented build of
//! every dependency that takes longer than CI may spend (fuzz/README.md).

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod harness;

use std::path::{Path, PathBuf};

/// Mutated inputs per target: a few seconds each.
const MUTATIONS: usize = 20_000;

fn files(folder: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(folder)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.expect("readable folder").path())
        .collect();
    paths.sort();
    paths
}

/// Run one input; on a panic, keep it where `scripts/fuzz.sh` keeps crashes' kin and
/// fail naming the file.
fn run(target: &str, harness: fn(&[u8]), data: &[u8], what: &str) {
    if std::panic::catch_unwind(|| harness(data)).is_err() {
        let out = std::env::temp_dir().join(format!("portcullis-fuzz-{target}-failure"));
        let _ = std::fs::write(&out, data);
        panic!(
            "{target}: {what} panics its harness (input saved to {})",
            out.display()
        );
    }
}

/// xorshift64*: a fixed sequence, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut d = corpus[rng.below(corpus.len())].clone();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            1 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] = [0, 0xff, b'%', b'/', b':', b'\n', b'"', b'-', 0x80][rng.below(9)];
            }
            2 => {
                let i = rng.below(d.len() + 1);
                d.insert(i, rng.next() as u8);
            }
            3 if !d.is_empty() => {
                let i = rng.below(d.len());
                let n = 1 + rng.below((d.len() - i).min(16));
                d.drain(i..i + n);
            }
            4 => {
                // Splice: this file's head with another's tail.
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(d.len() + 1);
                let from = rng.below(other.len() + 1);
                d.truncate(cut);
                d.extend_from_slice(&other[from..]);
            }
            _ => {
                let i = rng.below(d.len() + 1);
                let n = 1 + rng.below(64);
                let byte = rng.next() as u8;
                d.splice(i..i, std::iter::repeat_n(byte, n));
            }
        }
    }
    d
}

#[test]
fn every_corpus_file_and_mutations_of_them_pass_their_harness() {
    for (target, harness) in harness::TARGETS {
        let corpus: Vec<Vec<u8>> = files("corpus", target)
            .iter()
            .map(|p| std::fs::read(p).expect("readable corpus file"))
            .collect();
        assert!(!corpus.is_empty(), "target {target} has no corpus");
        for p in files("corpus", target)
            .iter()
            .chain(files("regressions", target).iter())
        {
            let data = std::fs::read(p).expect("readable file");
            run(target, harness, &data, &p.display().to_string());
        }
        let mut rng = Rng(0x5eed_0000 ^ (target.len() as u64 * 0x9e37_79b9));
        for i in 0..MUTATIONS {
            let data = mutate(&mut rng, &corpus);
            run(target, harness, &data, &format!("mutation {i}"));
        }
        println!(
            "{target}: {} corpus files and {MUTATIONS} mutations",
            corpus.len()
        );
    }
}
