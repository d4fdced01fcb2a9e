//! Reads a policy directory into a [`PolicySet`]: the only place policy files are read.
//!
//! Every `*.toml` entry at the top of the directory is a policy, except `*.tests.toml`
//! (policy test cases) and hidden files; data files are read from the paths the
//! policies name. All files are read and checked before anything is returned, so a
//! directory with any error in a policy the node enforces yields every error and no
//! policies.
//!
//! Architecture invariant: a file is read only when, symlinks resolved, it is a regular
//! file inside the policy directory and no larger than its limit; it is opened without
//! blocking and read through a bounded reader. An entry that cannot be read is an error
//! naming it, never a policy that silently disappears, and the content of a file outside
//! the directory is never read, so no error can echo it.
//!
//! Which jurisdiction a file is for: the one it declares, or, when it does not parse,
//! its name (`sg.toml` is `SG`). With a list of jurisdictions to enforce, problems in the
//! other files are warnings (logged), so a node keeps loading and reloading its own
//! policies whatever the state of the rest of a shared directory.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use silkgate_core::diag::Diagnostic;
use silkgate_core::policy::{self, DataText, LoadError, PolicySet, data, source};

/// Policy files (`*.toml` entries) a directory may hold.
pub const MAX_POLICY_FILES: usize = 1_000;

/// Bytes one load reads in all, policy and data files together (a data file named by
/// several policies counts each time).
pub const MAX_LOAD_BYTES: usize = 256 << 20;

/// The policy files of a directory, sorted by name: every `*.toml` entry, whatever its
/// type, so that one that is a directory or a dangling symlink is reported, not skipped.
pub fn policy_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let shown = dir.display().to_string();
    let entries = fs::read_dir(dir).map_err(|e| LoadError {
        diagnostics: vec![Diagnostic::file(&shown, format!("cannot read policy directory: {e}"))],
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.') && name.ends_with(".toml") && !name.ends_with(".tests.toml")
        })
        .take(MAX_POLICY_FILES + 1)
        .collect();
    if files.len() > MAX_POLICY_FILES {
        let msg = format!("more than {MAX_POLICY_FILES} policy files (*.toml) in the policy directory");
        return Err(LoadError { diagnostics: vec![Diagnostic::file(&shown, msg)] });
    }
    files.sort();
    Ok(files)
}

/// [`read_bounded`], also counting the bytes against what is left of a load's budget.
fn read_counted(path: &Path, root: Option<&Path>, limit: usize, budget: &mut usize) -> Result<String, String> {
    let text = read_bounded(path, root, limit.min(*budget)).map_err(|e| {
        if *budget < limit && e.starts_with("larger than") {
            format!("the files of this load together exceed {MAX_LOAD_BYTES} bytes")
        } else {
            e
        }
    })?;
    *budget -= text.len();
    Ok(text)
}

fn kind(t: fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Reads `path` as UTF-8 text if, symlinks resolved, it is a regular file of at most
/// `limit` bytes, inside `root` (a canonical directory) when one is given. Never blocks
/// on a FIFO and never reads more than `limit + 1` bytes.
pub fn read_bounded(path: &Path, root: Option<&Path>, limit: usize) -> Result<String, String> {
    String::from_utf8(read_bytes_bounded(path, root, limit)?).map_err(|_| "not valid UTF-8".to_string())
}

/// [`read_bounded`], as bytes.
pub fn read_bytes_bounded(path: &Path, root: Option<&Path>, limit: usize) -> Result<Vec<u8>, String> {
    let real = fs::canonicalize(path).map_err(|e| match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => "a symlink to nothing".to_string(),
        _ => e.to_string(),
    })?;
    if let Some(root) = root
        && !real.starts_with(root)
    {
        return Err("resolves to a file outside the policy directory".into());
    }
    let check = |meta: &fs::Metadata| {
        if !meta.is_file() {
            return Err(format!("not a regular file ({})", kind(meta.file_type())));
        }
        if meta.len() > limit as u64 {
            return Err(format!("larger than {limit} bytes"));
        }
        Ok(())
    };
    check(&fs::metadata(&real).map_err(|e| e.to_string())?)?;
    // Checked again on the open file: the path may have changed since.
    let file =
        fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&real).map_err(|e| e.to_string())?;
    check(&file.metadata().map_err(|e| e.to_string())?)?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() > limit {
        return Err(format!("larger than {limit} bytes"));
    }
    Ok(bytes)
}

/// Loads one policy file and its data files.
pub fn load_file(path: &Path) -> Result<policy::Policy, Vec<Diagnostic>> {
    load_file_with(path, &BTreeMap::new())
}

/// Loads one policy file, reading the data sets named in `overrides` from the given
/// files instead of the policy's own (policy tests use this for fixture data; those
/// files are the test author's choice, so they need not be inside the directory).
pub fn load_file_with(path: &Path, overrides: &BTreeMap<String, PathBuf>) -> Result<policy::Policy, Vec<Diagnostic>> {
    let mut budget = MAX_LOAD_BYTES;
    load_one(path, overrides, &mut budget).1
}

/// Loads one policy file; also says which jurisdiction it is for, when that is known:
/// the one it declares, or else the one its name says.
fn load_one(
    path: &Path,
    overrides: &BTreeMap<String, PathBuf>,
    budget: &mut usize,
) -> (Option<String>, Result<policy::Policy, Vec<Diagnostic>>) {
    let shown = path.display().to_string();
    let by_name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| s.len() == 2 && s.bytes().all(|b| b.is_ascii_alphabetic()))
        .map(str::to_ascii_uppercase);
    let fail = |msg: String| (by_name.clone(), Err(vec![Diagnostic::file(&shown, msg)]));
    let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).canonicalize() {
        Ok(d) => d,
        Err(e) => return fail(format!("cannot read the policy directory: {e}")),
    };
    let text = match read_counted(path, Some(&dir), source::MAX_FILE_BYTES, budget) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read policy file: {e}")),
    };
    let doc = match source::parse(&shown, &text) {
        Ok(d) => d,
        Err(d) => return (by_name, Err(d)),
    };
    let jurisdiction = Some(doc.jurisdiction.get_ref().clone());
    if let Some(name) = overrides.keys().find(|n| !doc.data.iter().any(|r| &r.name == *n)) {
        let msg = format!("the tests replace data set `{name}`, which this policy does not declare");
        return (jurisdiction, Err(vec![Diagnostic::file(&shown, msg)]));
    }
    let data: Vec<DataText> = doc
        .data
        .iter()
        .map(|r| match overrides.get(&r.name) {
            Some(p) => read_counted(p, None, data::MAX_FILE_BYTES, budget),
            None => read_counted(&dir.join(&r.file), Some(&dir), data::MAX_FILE_BYTES, budget),
        })
        .collect();
    (jurisdiction, policy::build(&doc, &data))
}

/// Loads every policy in `dir`. With `only`, keeps just those jurisdictions and fails
/// when one of them has no policy; problems in other jurisdictions' files are logged as
/// warnings (see [`load_dir_with_warnings`]).
pub fn load_dir(dir: &Path, only: Option<&[String]>) -> Result<PolicySet, LoadError> {
    let (set, warnings) = load_dir_with_warnings(dir, only)?;
    for w in &warnings {
        let at = format!("{}:{}:{}", w.file, w.line, w.column);
        tracing::warn!(at = %at, problem = %w.message, "a policy file this node does not enforce did not load");
    }
    Ok(set)
}

/// [`load_dir`], returning as warnings (instead of logging them) the problems in files of
/// jurisdictions outside `only`.
pub fn load_dir_with_warnings(dir: &Path, only: Option<&[String]>) -> Result<(PolicySet, Vec<Diagnostic>), LoadError> {
    let mut diagnostics = Vec::new();
    let mut warnings = Vec::new();
    let mut policies = BTreeMap::new();
    let mut files_by_jurisdiction: BTreeMap<String, String> = BTreeMap::new();
    let files = policy_files(dir)?;
    if files.is_empty() {
        let shown = dir.display().to_string();
        diagnostics.push(Diagnostic::file(&shown, "no policy files (*.toml) in the policy directory"));
    }
    let enforced = |j: Option<&String>| match (only, j) {
        (None, _) => true,
        (Some(only), Some(j)) => only.contains(j),
        (Some(_), None) => false,
    };
    let mut budget = MAX_LOAD_BYTES;
    for path in files {
        let (jurisdiction, result) = load_one(&path, &BTreeMap::new(), &mut budget);
        if !enforced(jurisdiction.as_ref()) {
            if let Err(d) = result {
                warnings.extend(d.into_iter().map(Diagnostic::warning));
            }
            continue;
        }
        match result {
            Ok(p) => {
                if let Some(first) = files_by_jurisdiction.insert(p.jurisdiction.clone(), p.file.clone()) {
                    diagnostics.push(Diagnostic::file(
                        &p.file,
                        format!("a second policy for jurisdiction `{}` (the first is {first})", p.jurisdiction),
                    ));
                    continue;
                }
                policies.insert(p.jurisdiction.clone(), Arc::new(p));
            }
            Err(mut d) => diagnostics.append(&mut d),
        }
    }
    if let Some(only) = only {
        let shown = dir.display().to_string();
        for j in only {
            if !policies.contains_key(j) && !diagnostics.iter().any(|d| d.is_error()) {
                diagnostics
                    .push(Diagnostic::file(&shown, format!("no policy for jurisdiction `{j}` in this directory")));
            }
        }
    }
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(LoadError { diagnostics });
    }
    Ok((PolicySet { policies, ..Default::default() }, warnings))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A policy for `j` whose one rule reads a data set from `data/list.toml`.
    pub(crate) fn policy_text(j: &str, version: &str) -> String {
        format!(
            "[policy]\nid = \"{id}\"\njurisdiction = \"{j}\"\nname = \"{j}\"\nversion = \"{version}\"\n\
             default = \"allow\"\n\n[data.list]\nfile = \"data/list.toml\"\n\n[[rule]]\nid = \"{id}.listed\"\n\
             effect = \"deny\"\nwhen = 'any addresses in data.list'\nmessage = \"m\"\ncitation = \"c\"\n",
            id = j.to_ascii_lowercase()
        )
    }

    /// A policy directory holding `cn.toml` and `sg.toml` and their data file.
    pub(crate) fn policy_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("data")).unwrap();
        fs::write(dir.path().join("data/list.toml"), "normalize = \"lowercase\"\n[[entry]]\nvalue = \"0xabc\"\n")
            .unwrap();
        fs::write(dir.path().join("cn.toml"), policy_text("CN", "1")).unwrap();
        fs::write(dir.path().join("sg.toml"), policy_text("SG", "1")).unwrap();
        dir
    }

    /// Runs `f` on its own thread and fails the test if it takes more than five seconds,
    /// so a read that blocks fails the test instead of hanging it.
    pub(crate) fn within_5s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(5)).expect("still running after 5 s: blocked")
    }

    /// Loads the directory (every jurisdiction) and returns the rendered errors.
    fn load_errors(dir: &Path) -> String {
        let dir = dir.to_path_buf();
        match within_5s(move || load_dir(&dir, None)) {
            Ok(set) => panic!("loaded {:?}", set.policies.keys().collect::<Vec<_>>()),
            Err(e) => e.to_string(),
        }
    }

    fn replace_data_file(dir: &Path, make: impl FnOnce(&Path)) {
        let path = dir.join("data/list.toml");
        fs::remove_file(&path).unwrap();
        make(&path);
    }

    #[test]
    fn loads_the_test_directory() {
        let dir = policy_dir();
        let set = load_dir(dir.path(), None).unwrap();
        assert_eq!(set.policies.keys().collect::<Vec<_>>(), ["CN", "SG"]);
    }

    #[test]
    fn loads_a_kubernetes_configmap_layout() {
        // Files in a hidden timestamped directory, reached through the `..data` symlink.
        let dir = tempfile::tempdir().unwrap();
        let files = policy_dir();
        fs::rename(files.path(), dir.path().join("..2026_01_01")).unwrap();
        std::os::unix::fs::symlink("..2026_01_01", dir.path().join("..data")).unwrap();
        for name in ["cn.toml", "sg.toml", "data"] {
            std::os::unix::fs::symlink(Path::new("..data").join(name), dir.path().join(name)).unwrap();
        }
        let set = load_dir(dir.path(), None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(set.policies.keys().collect::<Vec<_>>(), ["CN", "SG"]);
    }

    #[test]
    fn a_data_file_that_is_a_fifo_is_an_error_not_a_hang() {
        let dir = policy_dir();
        replace_data_file(dir.path(), |p| {
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        });
        let e = load_errors(dir.path());
        assert!(e.contains("data/list.toml`: not a regular file (a FIFO)"), "{e}");
    }

    #[test]
    fn a_data_file_linked_to_dev_zero_is_an_error_not_an_endless_read() {
        let dir = policy_dir();
        replace_data_file(dir.path(), |p| std::os::unix::fs::symlink("/dev/zero", p).unwrap());
        let e = load_errors(dir.path());
        // /dev/zero is outside the directory; a device inside it is refused as well.
        assert!(e.contains("data/list.toml`: resolves to a file outside the policy directory"), "{e}");
        fs::remove_file(dir.path().join("data/list.toml")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero")).unwrap();
        std::os::unix::fs::symlink("../zero", dir.path().join("data/list.toml")).unwrap();
        let e = read_bounded(&dir.path().join("data/list.toml"), None, data::MAX_FILE_BYTES).unwrap_err();
        assert_eq!(e, "not a regular file (a device)");
    }

    #[test]
    fn a_data_file_past_the_size_limit_is_an_error() {
        let dir = policy_dir();
        let path = dir.path().join("data/list.toml");
        let file = fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.set_len(data::MAX_FILE_BYTES as u64 + 1).unwrap();
        let e = load_errors(dir.path());
        assert!(e.contains(&format!("data/list.toml`: larger than {} bytes", data::MAX_FILE_BYTES)), "{e}");
        file.set_len(data::MAX_FILE_BYTES as u64).unwrap();
        assert!(read_bytes_bounded(&path, None, data::MAX_FILE_BYTES).is_ok());
    }

    #[test]
    fn a_load_reads_a_bounded_number_of_files_and_bytes() {
        let dir = policy_dir();
        // Seventeen policies naming the same 16 MiB data file pass the 256 MiB budget.
        let path = dir.path().join("data/list.toml");
        let file = fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.set_len(data::MAX_FILE_BYTES as u64).unwrap();
        for i in 0..15 {
            fs::write(dir.path().join(format!("p{i:02}.toml")), policy_text(&format!("Q{}", (b'A' + i) as char), "1"))
                .unwrap();
        }
        let e = load_errors(dir.path());
        assert!(e.contains(&format!("together exceed {MAX_LOAD_BYTES} bytes")), "{e}");
        // Past the number of policy files.
        let dir = policy_dir();
        for i in 0..MAX_POLICY_FILES - 2 {
            fs::write(dir.path().join(format!("p{i:04}.toml")), "").unwrap();
        }
        assert!(!load_errors(dir.path()).contains("policy files"));
        fs::write(dir.path().join("zz.toml"), "").unwrap();
        let e = load_errors(dir.path());
        assert!(e.contains(&format!("more than {MAX_POLICY_FILES} policy files")), "{e}");
    }

    #[test]
    fn a_data_file_linked_outside_the_directory_is_refused_unread() {
        let dir = policy_dir();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret.toml");
        fs::write(&secret, "root-password = hunter2 SECRET\n").unwrap();
        replace_data_file(dir.path(), |p| std::os::unix::fs::symlink(&secret, p).unwrap());
        let e = load_errors(dir.path());
        assert!(e.contains("data/list.toml`: resolves to a file outside the policy directory"), "{e}");
        assert!(!e.contains("SECRET") && !e.contains("hunter2"), "{e}");
        // A policy file linked outside is refused the same way.
        fs::remove_file(dir.path().join("sg.toml")).unwrap();
        std::os::unix::fs::symlink(&secret, dir.path().join("sg.toml")).unwrap();
        let e = load_errors(dir.path());
        assert!(e.contains("sg.toml:1:1: error: cannot read policy file: resolves to a file outside"), "{e}");
        assert!(!e.contains("SECRET") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn a_policy_entry_that_is_a_dangling_symlink_or_a_directory_is_an_error() {
        let dir = policy_dir();
        fs::remove_file(dir.path().join("sg.toml")).unwrap();
        std::os::unix::fs::symlink("gone.toml", dir.path().join("sg.toml")).unwrap();
        let e = load_errors(dir.path());
        assert!(e.contains("sg.toml:1:1: error: cannot read policy file: a symlink to nothing"), "{e}");
        fs::remove_file(dir.path().join("sg.toml")).unwrap();
        fs::write(dir.path().join("sg.toml"), policy_text("SG", "1")).unwrap();
        fs::create_dir(dir.path().join("x.toml")).unwrap();
        let e = load_errors(dir.path());
        assert!(e.contains("x.toml:1:1: error: cannot read policy file: not a regular file (a directory)"), "{e}");
        fs::remove_dir(dir.path().join("x.toml")).unwrap();
        let c = std::ffi::CString::new(dir.path().join("x.toml").as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = load_errors(dir.path());
        assert!(e.contains("x.toml:1:1: error: cannot read policy file: not a regular file (a FIFO)"), "{e}");
    }

    #[test]
    fn a_node_starts_on_its_jurisdictions_whatever_the_state_of_the_others() {
        let dir = policy_dir();
        let cn = ["CN".to_string()];
        let broken = policy_text("SG", "2") + "\n[[rule]\nthis is not toml\n";
        fs::write(dir.path().join("sg.toml"), &broken).unwrap();
        let (set, warnings) = load_dir_with_warnings(dir.path(), Some(&cn)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(set.policies.keys().collect::<Vec<_>>(), ["CN"]);
        let w = policy::render(&warnings);
        assert!(w.contains("sg.toml:") && w.contains(": warning: ") && w.ends_with("0 error(s)"), "{w}");
        // A dangling symlink and a directory in place of another jurisdiction's file too.
        fs::remove_file(dir.path().join("sg.toml")).unwrap();
        std::os::unix::fs::symlink("gone.toml", dir.path().join("sg.toml")).unwrap();
        fs::create_dir(dir.path().join("us.toml")).unwrap();
        let (set, warnings) = load_dir_with_warnings(dir.path(), Some(&cn)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((set.policies.len(), warnings.len()), (1, 2));
        // A node enforcing everything, or SG, refuses the broken file.
        fs::remove_file(dir.path().join("sg.toml")).unwrap();
        fs::remove_dir(dir.path().join("us.toml")).unwrap();
        fs::write(dir.path().join("sg.toml"), &broken).unwrap();
        assert!(load_dir(dir.path(), None).is_err());
        let e = load_dir(dir.path(), Some(&["SG".to_string()])).unwrap_err().to_string();
        assert!(e.contains("sg.toml:") && !e.contains("cn.toml"), "{e}");
        // Its own broken file stops a node from starting, naming the file.
        fs::write(dir.path().join("cn.toml"), policy_text("CN", "1") + "oops").unwrap();
        let e = load_dir(dir.path(), Some(&cn)).unwrap_err().to_string();
        assert!(e.contains("cn.toml:") && !e.contains("sg.toml"), "{e}");
    }
}
