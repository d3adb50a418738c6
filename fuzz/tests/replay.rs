//! Deterministic replay: every committed corpus file (`corpus/<target>/*`) and every
//! saved crash regression (`regressions/<target>/*`) through its harness, so that what
//! the fuzzer once found stays fixed without running AFL++. Fails on an empty corpus.

use std::path::Path;

#[test]
fn every_corpus_file_passes_its_harness() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut total = 0;
    for (target, harness) in portcullis_fuzz::TARGETS {
        let mut files = 0;
        for folder in ["corpus", "regressions"] {
            let dir = root.join(folder).join(target);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                assert_ne!(folder, "corpus", "no corpus folder {}", dir.display());
                continue;
            };
            let mut paths: Vec<_> = entries
                .map(|e| e.expect("readable folder").path())
                .collect();
            paths.sort();
            for path in paths {
                let data = std::fs::read(&path).expect("readable corpus file");
                let outcome = std::panic::catch_unwind(|| harness(&data));
                assert!(outcome.is_ok(), "{target}: {} fails", path.display());
                files += 1;
            }
        }
        assert!(files > 0, "target {target} has no corpus");
        println!("{target}: {files} files replayed");
        total += files;
    }
    println!("{total} files replayed");
}
