//! Build script: the git commit for `sockbroker --version` and
//! `sockbroker_build_info`, and the man pages and shell completions generated
//! from the clap definitions in `src/cli/args.rs` (the same file the binary
//! parses with, so they cannot drift apart).
//!
//! The generated files are written to `OUT_DIR` and copied to
//! `<target>/<profile>/sockbroker-assets/` (`man/`, `completions/`): cargo-deb
//! takes assets from `target/release/…` (see `[package.metadata.deb]` in
//! Cargo.toml), and `OUT_DIR`'s hashed name cannot be named there.

use std::path::{Path, PathBuf};
use std::process::Command;

#[allow(dead_code)]
#[path = "src/cli/args.rs"]
mod args;

use clap::CommandFactory;
use clap_complete::Shell;

fn main() {
    let commit = git_commit();
    let version = env!("CARGO_PKG_VERSION");
    let line = format!("{version} (git {commit})");
    println!("cargo:rustc-env=SOCKBROKER_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=SOCKBROKER_VERSION_LINE={line}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/cli/args.rs");

    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let assets = out.join("assets");
    generate(&assets, &line).expect("generate man pages and completions");
    // OUT_DIR is <target>/[<triple>/]<profile>/build/sockbroker-<hash>/out.
    if let Some(profile_dir) = out.ancestors().nth(3) {
        let stable = profile_dir.join("sockbroker-assets");
        // Deleted or changed by hand, it makes cargo run this script again;
        // files are rewritten only when their content differs, so an
        // unchanged copy does not make every build rerun the script.
        println!("cargo:rerun-if-changed={}", stable.display());
        copy_dir(&assets, &stable).expect("copy the generated assets");
    }
}

/// The commit this is built from: `$SOCKBROKER_GIT_COMMIT` if set (e.g. a
/// release built from a tarball), else `git rev-parse`, else "unknown" (not a
/// git checkout, or no git installed). Also tells cargo which git files to
/// watch so a new commit rebuilds with the new id.
fn git_commit() -> String {
    println!("cargo:rerun-if-env-changed=SOCKBROKER_GIT_COMMIT");
    if let Ok(c) = std::env::var("SOCKBROKER_GIT_COMMIT") {
        if !c.trim().is_empty() {
            return c.trim().to_string();
        }
    }
    let git = |args: &[&str]| -> Option<String> {
        let o = Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()?;
        let s = String::from_utf8(o.stdout).ok()?.trim().to_string();
        (o.status.success() && !s.is_empty()).then_some(s)
    };
    // This crate must be tracked by the repository git finds: a crate tarball
    // unpacked inside some other checkout (vendored) is not that checkout's commit.
    if git(&["ls-files", "--full-name", "Cargo.toml"]).is_none() {
        return "unknown".into();
    }
    let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".into();
    };
    // HEAD, the branch it names (a worktree keeps its refs in the common dir)
    // and packed-refs: any of them changes when a commit is made.
    let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(r);
    }
    for w in watch {
        if let Some(p) = git(&["rev-parse", "--path-format=absolute", "--git-path", &w]) {
            if Path::new(&p).exists() {
                println!("cargo:rerun-if-changed={p}");
            }
        }
    }
    commit
}

/// sockbroker(8) and sockbroker-SUBCOMMAND(8); completions for bash, zsh, fish.
fn generate(dir: &Path, version: &str) -> std::io::Result<()> {
    let man = dir.join("man");
    let comp = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&comp)?;
    let mut cmd = args::Cli::command().version(version.to_string().leak() as &str);
    cmd.build();
    let page = |c: clap::Command, name: &str| -> std::io::Result<()> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(c)
            .section("8")
            .manual("System Administration")
            .source(format!("sockbroker {}", env!("CARGO_PKG_VERSION")))
            .render(&mut buf)?;
        // clap_mangen titles `after_help` "EXTRA", no section a reader knows;
        // man-pages(7) calls such text NOTES.
        let buf = String::from_utf8_lossy(&buf).replace("\n.SH EXTRA\n", "\n.SH NOTES\n");
        // gzip -9n: best compression, no name, no time (reproducible).
        let file = std::fs::File::create(man.join(format!("{name}.8.gz")))?;
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(file, flate2::Compression::best());
        std::io::Write::write_all(&mut gz, buf.as_bytes())?;
        gz.finish().map(drop)
    };
    page(cmd.clone(), "sockbroker")?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("sockbroker-{}", sub.get_name());
        // clap's names are &'static str (no "string" feature); a build script may leak.
        let n: &'static str = name.clone().leak();
        let bin: &'static str = format!("sockbroker {}", sub.get_name()).leak();
        page(sub.clone().name(n).bin_name(bin), &name)?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "sockbroker", &comp)?;
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()))?;
        } else {
            let data = std::fs::read(e.path())?;
            let dest = to.join(e.file_name());
            if std::fs::read(&dest).ok().as_ref() != Some(&data) {
                std::fs::write(&dest, data)?;
            }
        }
    }
    Ok(())
}
