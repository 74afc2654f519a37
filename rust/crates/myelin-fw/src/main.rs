//! `myelin-fw`: the command line over the [`myelin_fw`] library.
//!
//! Subcommands (`create`, `apply`, `list`, `metadata`, `verify`, `sign`, `gen-keys`, `burn`)
//! and fwup's own flags (`-c -f fwup.conf -o x.fw`, `-a -i x.fw -d /dev/sdX -t upgrade`, `-l`,
//! `-m`, `-V`, `-S`, `-g`, `--framing`, ...) both work, so scripts written for fwup run as
//! they are. `myelin-fw x.fw` alone burns `x.fw`'s `complete` task to an SD card.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use myelin_fw::burn::{self, Disks};
use myelin_fw::progress::{Event, FramedReader, write_frame};
use myelin_fw::{
    ApplyOptions, CreateOptions, FileTarget, Host, MinimizeWrites, PrivateKey, PublicKey, Target,
    Vars, Verified,
};
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "myelin-fw",
    about = "Create, inspect and apply fwup-compatible firmware update files",
    disable_version_flag = true,
    args_conflicts_with_subcommands = true,
    after_help = DIFFERENCES
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    opts: Opts,
}

/// What `--help` says about where myelin-fw deliberately differs from fwup 1.16.
const DIFFERENCES: &str = "\
Differences from fwup (deliberate; the README explains each):
  - Checks before the first write: every call's arguments, every range against a device or
    --max-size, delta sources; from a file, the archive's directory lists every entry first.
    fwup starts writing on-init and finds some of these problems later.
  - The environment's bytes are fwup's (one write per uboot_* call), but they reach the disk
    at commit in an order that keeps a valid environment at every power cut. on-init's
    environment changes are durable before the slot is written; fwup's cache writes them last.
  - A delta window is checked (Adler-32) before any of it is written; fwup writes the bytes it
    decoded first. Entries a task does not use are skipped unread (not inflated, not checked).
  - Not supported: raw_write encryption, delta-source-raw-options, execute, path_write,
    pipe_write, ubi_volume_write, require-execute; --verify-writes is accepted and ignored.
  - Extensions: `burn`, `delta OLD.fw NEW.fw -o DELTA.fw`, `create --ops`.";

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a .fw archive from a fwup.conf (fwup -c)
    Create(Opts),
    /// Apply a task of a .fw archive to a device or image file (fwup -a)
    Apply(Opts),
    /// List the tasks of an archive (fwup -l)
    List(Opts),
    /// Print an archive's metadata (fwup -m)
    Metadata(Opts),
    /// Check an archive's signature and every resource (fwup -V)
    Verify(Opts),
    /// Sign an existing archive (fwup -S)
    Sign(Opts),
    /// Generate a signing key pair (fwup -g)
    GenKeys(Opts),
    /// Write an archive's `complete` task to a removable SD card
    Burn(Opts),
    /// Make a delta archive from OLD.fw to NEW.fw (resources with a delta source in NEW's
    /// tasks become VCDIFF deltas against OLD's; signature and meta.conf are NEW's)
    Delta(DeltaArgs),
}

#[derive(Args, Debug, Clone)]
struct DeltaArgs {
    /// The archive the devices run
    old: PathBuf,
    /// The archive to deliver
    new: PathBuf,
    /// The delta archive to write
    #[arg(short = 'o', value_name = "DELTA_FW")]
    output: PathBuf,
}

fn make_delta(a: &DeltaArgs) -> Result<()> {
    let open = |p: &Path| {
        std::fs::File::open(p)
            .map(|f| io::BufReader::with_capacity(1 << 20, f))
            .with_context(|| format!("Failed to open '{}'", p.display()))
    };
    let tmp = PathBuf::from(format!("{}.tmp", a.output.display()));
    let result = (|| -> Result<Vec<myelin_fw::delta::DeltaEntry>> {
        let out = std::fs::File::create(&tmp)
            .with_context(|| format!("Error creating archive '{}'", tmp.display()))?;
        let report = myelin_fw::delta::make(
            open(&a.old)?,
            open(&a.new)?,
            io::BufWriter::new(out),
            9,
            &myelin_fw::vcdiff::EncodeOptions::default(),
        )?;
        std::fs::rename(&tmp, &a.output)?;
        Ok(report)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    for e in result? {
        match e.delta {
            Some(d) => println!("{}: {} bytes as a {d}-byte delta", e.name, e.size),
            None => println!("{}: {} bytes, full", e.name, e.size),
        }
    }
    Ok(())
}

#[derive(Args, Debug, Clone, Default)]
struct Opts {
    /// Apply the firmware update
    #[arg(short = 'a', long = "apply")]
    apply: bool,
    /// Create the firmware update
    #[arg(short = 'c', long = "create")]
    create: bool,
    /// List the tasks in a firmware update
    #[arg(short = 'l', long = "list")]
    list: bool,
    /// Print the metadata of a firmware update
    #[arg(short = 'm', long = "metadata")]
    metadata: bool,
    /// Verify a firmware update (signature and resources)
    #[arg(short = 'V', long = "verify")]
    verify: bool,
    /// Sign an existing firmware update (-i in, -o out, -s key)
    #[arg(short = 'S', long = "sign")]
    sign: bool,
    /// Generate signing keys (fwup-key.pub and fwup-key.priv, or the -o prefix)
    #[arg(short = 'g', long = "gen-keys")]
    gen_keys: bool,
    /// List the removable memory cards `burn` would consider, as "device,bytes" lines
    #[arg(short = 'D', long = "detect")]
    detect: bool,
    /// Print the memory card that would be automatically detected and exit (as fwup -z)
    #[arg(short = 'z')]
    print_detected: bool,
    /// Accepted for fwup compatibility (cards are not ejected)
    #[arg(short = 'E', long = "eject")]
    eject: bool,
    /// Accepted for fwup compatibility
    #[arg(long = "no-eject")]
    no_eject: bool,
    /// Device or image file to write
    #[arg(short = 'd', value_name = "DEVICE")]
    device: Option<PathBuf>,
    /// The fwup.conf to create from
    #[arg(short = 'f', value_name = "FWUP_CONF")]
    config: Option<PathBuf>,
    /// Input firmware update (- for stdin)
    #[arg(short = 'i', value_name = "INPUT_FW")]
    input: Option<PathBuf>,
    /// Output file (- for stdout), or key prefix with -g
    #[arg(short = 'o', value_name = "OUTPUT")]
    output: Option<PathBuf>,
    /// Task to apply (prefix match: `upgrade` runs `upgrade.a` or `upgrade.b`)
    #[arg(short = 't', long = "task")]
    task: Option<String>,
    /// Public key file to verify with (repeatable)
    #[arg(short = 'p', long = "public-key-file", value_name = "FILE")]
    public_key_files: Vec<PathBuf>,
    /// Public key, base64 or a key file (repeatable)
    #[arg(long = "public-key", value_name = "KEY")]
    public_keys: Vec<String>,
    /// Private key file to sign with
    #[arg(short = 's', long = "private-key-file", value_name = "FILE")]
    private_key_file: Option<PathBuf>,
    /// Private key, base64 or a key file
    #[arg(long = "private-key", value_name = "KEY")]
    private_key: Option<String>,
    /// Framed input and output for programs (fwup's protocol)
    #[arg(short = 'F', long = "framing")]
    framing: bool,
    /// No progress output
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Numeric progress, one percentage per line
    #[arg(short = 'n')]
    numeric: bool,
    /// Unmount the device's partitions first (burn does this by default)
    #[arg(short = 'u', long = "unmount")]
    unmount: bool,
    /// Do not unmount anything
    #[arg(short = 'U', long = "no-unmount")]
    no_unmount: bool,
    /// Accepted for fwup compatibility; myelin-fw runs no host commands either way
    #[arg(long = "unsafe")]
    unsafe_: bool,
    /// More messages
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Do not ask before writing the card that was found
    #[arg(short = 'y')]
    yes: bool,
    /// Let trim() discard blocks on block devices
    #[arg(long = "enable-trim")]
    enable_trim: bool,
    /// Print only this metadata key's value
    #[arg(long = "metadata-key")]
    metadata_key: Option<String>,
    /// Lowest progress value reported
    #[arg(long = "progress-low", default_value_t = 0)]
    progress_low: u16,
    /// Highest progress value reported
    #[arg(long = "progress-high", default_value_t = 100)]
    progress_high: u16,
    /// Where reboot_param() writes (default /run/systemd/reboot-param, /run/reboot-param)
    #[arg(long = "reboot-param-path")]
    reboot_param_path: Option<PathBuf>,
    /// U-Boot environment lock taken around environment writes (default: libubootenv's
    /// /var/lock/fw_printenv.lock when the target is a block device, none for an image file)
    #[arg(long = "env-lock", value_name = "FILE")]
    env_lock: Option<PathBuf>,
    /// Take no environment lock, even on a block device
    #[arg(long = "no-env-lock", conflicts_with = "env_lock")]
    no_env_lock: bool,
    /// Seconds to wait for the environment lock before failing
    #[arg(long = "env-lock-wait", default_value_t = myelin_ubootenv::DEFAULT_LOCK_WAIT.as_secs_f64())]
    env_lock_wait: f64,
    /// Keep only the tasks that need no host file (for ops.fw)
    #[arg(long = "ops")]
    ops: bool,
    /// Send Ctrl-Z on exit and wait for stdin to close (Erlang ports)
    #[arg(long = "exit-handshake")]
    exit_handshake: bool,
    /// Accepted for fwup compatibility (writes are not read back)
    #[arg(long = "verify-writes")]
    verify_writes: bool,
    /// Accepted for fwup compatibility
    #[arg(long = "no-verify-writes")]
    no_verify_writes: bool,
    /// Max size of the destination in 512-byte blocks: writes past it are refused before the
    /// apply starts (usually automatic for devices; image files otherwise grow)
    #[arg(long = "max-size", value_name = "BLOCKS", value_parser = parse_blocks)]
    max_size: Option<u64>,
    /// Skip writes whose contents match the destination (reads before writing)
    #[arg(long = "minimize-writes", overrides_with = "no_minimize_writes")]
    minimize_writes: bool,
    /// Write everything without reading first (default)
    #[arg(long = "no-minimize-writes")]
    no_minimize_writes: bool,
    /// Check whether the file system at PATH supports sparse files, and exit
    #[arg(long = "sparse-check", value_name = "PATH")]
    sparse_check: Option<PathBuf>,
    /// Hole size for --sparse-check (bytes)
    #[arg(long = "sparse-check-size", value_name = "BYTES", default_value = "4096", value_parser = parse_blocks)]
    sparse_check_size: u64,
    /// Print the version
    #[arg(long = "version")]
    version: bool,
    /// Fast compression
    #[arg(short = '1', hide = true)]
    level1: bool,
    #[arg(short = '2', hide = true)]
    level2: bool,
    #[arg(short = '3', hide = true)]
    level3: bool,
    #[arg(short = '4', hide = true)]
    level4: bool,
    #[arg(short = '5', hide = true)]
    level5: bool,
    #[arg(short = '6', hide = true)]
    level6: bool,
    #[arg(short = '7', hide = true)]
    level7: bool,
    #[arg(short = '8', hide = true)]
    level8: bool,
    /// Best compression (default)
    #[arg(short = '9', hide = true)]
    level9: bool,
    /// Input firmware (apply, list, metadata, verify, sign, burn) or fwup.conf (create)
    file: Option<PathBuf>,
}

impl Opts {
    fn level(&self) -> u32 {
        let flags = [
            self.level1,
            self.level2,
            self.level3,
            self.level4,
            self.level5,
            self.level6,
            self.level7,
            self.level8,
            self.level9,
        ];
        flags
            .iter()
            .rposition(|&f| f)
            .map(|i| i as u32 + 1)
            .unwrap_or(9)
    }

    fn input(&self) -> Option<PathBuf> {
        self.input.clone().or_else(|| self.file.clone())
    }

    fn keys(&self) -> Result<Vec<PublicKey>> {
        let mut keys = Vec::new();
        for f in &self.public_key_files {
            let text = std::fs::read(f)
                .with_context(|| format!("Error opening public key file '{}'", f.display()))?;
            keys.push(
                PublicKey::from_fwup(&text)
                    .with_context(|| format!("Error reading public key from '{}'", f.display()))?,
            );
        }
        for k in &self.public_keys {
            keys.push(PublicKey::from_fwup(&key_text(k)?).context("Error decoding public key")?);
        }
        Ok(keys)
    }

    fn signing_key(&self) -> Result<Option<PrivateKey>> {
        if let Some(f) = &self.private_key_file {
            let text = std::fs::read(f)
                .with_context(|| format!("Error opening private key file '{}'", f.display()))?;
            return Ok(Some(PrivateKey::from_fwup(&text).with_context(|| {
                format!("Error reading private key from '{}'", f.display())
            })?));
        }
        if let Some(k) = &self.private_key {
            return Ok(Some(
                PrivateKey::from_fwup(&key_text(k)?).context("Error decoding private key")?,
            ));
        }
        Ok(None)
    }
}

/// The key given to `--private-key`/`--public-key`: fwup takes the key itself; a path to an
/// existing key file is accepted too, since base64 keys never name a file.
fn key_text(value: &str) -> Result<Vec<u8>> {
    let p = Path::new(value);
    if p.is_file() {
        return std::fs::read(p).with_context(|| format!("Error opening key file '{value}'"));
    }
    Ok(value.as_bytes().to_vec())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Create,
    Apply,
    List,
    Metadata,
    Verify,
    Sign,
    GenKeys,
    Burn,
    Detect,
    Selected,
    SparseCheck,
}

/// A number in C notation (fwup reads these with strtoul).
fn parse_blocks(s: &str) -> Result<u64, String> {
    myelin_fw::config::model::parse_c_uint(s).ok_or_else(|| format!("'{s}' is not a number"))
}

/// Where output goes: plain text or fwup's frames on stdout.
struct Reporter {
    framing: bool,
}

impl Reporter {
    fn success(&self, text: &str) -> Result<()> {
        let mut out = io::stdout().lock();
        if self.framing {
            write_frame(&mut out, b"OK", 0, text)?;
        } else {
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
        Ok(())
    }
}

fn open_input(path: Option<&Path>, framing: bool) -> Result<Box<dyn Read>> {
    match path {
        None => bail!("specify an input firmware file with -i"),
        Some(p) if p.as_os_str() == "-" => {
            let stdin = io::stdin();
            if framing {
                Ok(Box::new(FramedReader::new(stdin)))
            } else {
                Ok(Box::new(stdin))
            }
        }
        Some(p) => Ok(Box::new(io::BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(p).with_context(|| format!("Failed to open '{}'", p.display()))?,
        ))),
    }
}

fn run(mode: Mode, o: &Opts, rep: &Reporter) -> Result<()> {
    match mode {
        Mode::Create => {
            let config = o
                .config
                .clone()
                .or_else(|| o.file.clone())
                .unwrap_or_else(|| PathBuf::from("fwupdate.conf"));
            let output = o
                .output
                .clone()
                .ok_or_else(|| anyhow!("specify an output file with -o"))?;
            let opts = CreateOptions {
                config,
                vars: Vars::from_env(),
                signing_key: o.signing_key()?,
                level: o.level(),
                ops_only: o.ops,
            };
            if output.as_os_str() == "-" {
                let stdout = io::stdout().lock();
                myelin_fw::create(&opts, io::BufWriter::new(stdout))?;
            } else {
                myelin_fw::create_file(&opts, &output)?;
            }
            Ok(())
        }
        Mode::List => {
            let tasks = myelin_fw::list(open_input(o.input().as_deref(), o.framing)?, &o.keys()?)?;
            rep.success(&tasks.iter().map(|t| format!("{t}\n")).collect::<String>())
        }
        Mode::Detect => {
            let text: String = Disks::default()
                .candidates()
                .iter()
                .map(|d| format!("{},{}\n", d.path.display(), d.size))
                .collect();
            rep.success(&text)
        }
        Mode::Selected => {
            let disk = selected_card(&Disks::default())?;
            rep.success(&format!("{}\n", disk.path.display()))
        }
        Mode::SparseCheck => {
            let path = o
                .sparse_check
                .clone()
                .ok_or_else(|| anyhow!("specify a path with --sparse-check"))?;
            myelin_fw::create::sparse_files_supported(&path, o.sparse_check_size)?;
            rep.success("Sparse files supported\n")
        }
        Mode::Metadata => {
            let cfg =
                myelin_fw::metadata(open_input(o.input().as_deref(), o.framing)?, &o.keys()?)?;
            let text = match &o.metadata_key {
                Some(k) => format!(
                    "{}\n",
                    myelin_fw::meta::metadata_value(&cfg, k).unwrap_or_default()
                ),
                None => myelin_fw::meta::metadata_lines(&cfg),
            };
            rep.success(&text)
        }
        Mode::Verify => {
            let keys = o.keys()?;
            let v = myelin_fw::verify(
                open_input(o.input().as_deref(), o.framing)?,
                &keys,
                &Vars::from_env(),
            )?;
            rep.success(match v {
                Verified::GoodSignature => "Valid archive with a good signature\n",
                Verified::UnverifiedSignature => {
                    "Valid archive with an unverified signature. Specify a public key to authenticate.\n"
                }
                Verified::Unsigned => "Valid archive without a signature\n",
            })
        }
        Mode::Sign => {
            let key = o
                .signing_key()?
                .ok_or_else(|| anyhow!("Specify a signing key"))?;
            let input = o
                .input()
                .ok_or_else(|| anyhow!("Specify an input firmware file"))?;
            let output = o
                .output
                .clone()
                .ok_or_else(|| anyhow!("Specify an output firmware file"))?;
            let tmp = PathBuf::from(format!("{}.tmp", output.display()));
            let result = (|| -> Result<()> {
                let out = std::fs::File::create(&tmp)
                    .with_context(|| format!("Error creating archive '{}'", tmp.display()))?;
                myelin_fw::create::sign_archive(
                    open_input(Some(&input), false)?,
                    io::BufWriter::new(out),
                    &key,
                    o.level(),
                    &Vars::from_env(),
                )?;
                std::fs::rename(&tmp, &output)?;
                Ok(())
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result
        }
        Mode::GenKeys => {
            let prefix = o
                .output
                .clone()
                .unwrap_or_else(|| PathBuf::from("fwup-key"));
            let key = PrivateKey::generate()?;
            let pub_path = PathBuf::from(format!("{}.pub", prefix.display()));
            let priv_path = PathBuf::from(format!("{}.priv", prefix.display()));
            save_key(&pub_path, &key.public().to_fwup())?;
            save_key(&priv_path, &key.to_fwup())?;
            let (p, s) = (
                pub_path.file_name().unwrap_or_default().to_string_lossy(),
                priv_path.file_name().unwrap_or_default().to_string_lossy(),
            );
            rep.success(&format!(
                "Firmware signing keys created and saved to '{p}' and '{s}'\n\n\
                 Distribute '{p}' with your system so that firmware updates can be\n\
                 authenticated. Keep '{s}' in a safe location.\n"
            ))
        }
        Mode::Apply => {
            let device = o.device.clone().ok_or_else(|| {
                anyhow!("specify a device or image file with -d (or use `myelin-fw burn`)")
            })?;
            apply_to(o, rep, &device)
        }
        Mode::Burn => {
            let disks = Disks::default();
            let device = match &o.device {
                Some(d) => {
                    if is_block_device(d) {
                        disks.check_not_root(d)?;
                    }
                    d.clone()
                }
                None => {
                    let disk = selected_card(&disks)?;
                    if !o.yes {
                        if o.input().as_deref().is_some_and(|p| p.as_os_str() == "-") {
                            bail!(
                                "Cannot confirm use of {} when using stdin. Rerun with -y if location is correct.",
                                disk.path.display()
                            );
                        }
                        eprint!(
                            "Use {} memory card found at {}{}? [y/N] ",
                            burn::pretty_size(disk.size),
                            disk.path.display(),
                            if disk.model.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", disk.model)
                            }
                        );
                        let mut answer = String::new();
                        io::stdin().read_line(&mut answer)?;
                        if !matches!(answer.trim(), "y" | "Y" | "yes") {
                            bail!("aborted by user");
                        }
                    }
                    if !o.no_unmount {
                        for m in disks.mounted_partitions(&disk) {
                            burn::unmount(&m)
                                .with_context(|| format!("unmounting {}", m.display()))?;
                        }
                    }
                    disk.path
                }
            };
            let mut o = o.clone();
            if o.task.is_none() {
                o.task = Some("complete".into());
            }
            apply_to(&o, rep, &device)
        }
    }
}

/// The one removable card found, as `burn` and `-z` pick it.
fn selected_card(disks: &Disks) -> Result<burn::Disk> {
    let found = disks.candidates();
    match found.as_slice() {
        [] => bail!("No memory cards found. Try reinserting the card."),
        [one] => Ok(one.clone()),
        many => {
            let list: Vec<String> = many
                .iter()
                .map(|d| {
                    format!(
                        "  {} ({}; {})",
                        d.path.display(),
                        burn::pretty_size(d.size),
                        d.model
                    )
                })
                .collect();
            bail!(
                "Too many possible memory cards found:\n{}\nSpecify one using the -d option.",
                list.join("\n")
            );
        }
    }
}

fn is_block_device(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device())
}

fn save_key(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("Couldn't create '{}'", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

fn apply_to(o: &Opts, rep: &Reporter, device: &Path) -> Result<()> {
    let task = o
        .task
        .clone()
        .ok_or_else(|| anyhow!("specify a task (-t)"))?;
    let keys = o.keys()?;
    // The signature is checked before the output is even opened; from a file, the archive's
    // central directory is read first so that everything is checked before the first write.
    let vars = Vars::from_env();
    let opened: myelin_fw::Opened<Box<dyn Read>> = match o.input() {
        Some(p) if p.as_os_str() != "-" => {
            let file = std::fs::File::open(&p)
                .with_context(|| format!("Failed to open '{}'", p.display()))?;
            let o = myelin_fw::open_seekable(
                io::BufReader::with_capacity(1 << 20, file),
                &keys,
                &vars,
            )?;
            myelin_fw::Opened {
                reader: o.reader.boxed(),
                config: o.config,
                meta_conf: o.meta_conf,
                uuid: o.uuid,
                signed: o.signed,
                index: o.index,
            }
        }
        p => myelin_fw::open(open_input(p.as_deref(), o.framing)?, &keys, &vars)?,
    };
    let mut file = FileTarget::open(device).with_context(|| {
        format!(
            "Cannot open '{}' for output. Check the path, file permissions or the read-only tab of the SD card.",
            device.display()
        )
    })?;
    if let Some(blocks) = o.max_size.filter(|&b| b > 0) {
        file.set_max_size(blocks.saturating_mul(512));
    }
    let mut target: Box<dyn Target> = if o.minimize_writes {
        Box::new(MinimizeWrites(file))
    } else {
        Box::new(file)
    };
    let env_lock = match (&o.env_lock, o.no_env_lock) {
        (_, true) => None,
        (Some(path), false) => Some(path.clone()),
        // On a device, fw_setenv and myelin-kv may write the same environment.
        (None, false) if is_block_device(device) => {
            Some(PathBuf::from(myelin_ubootenv::DEFAULT_LOCK_PATH))
        }
        (None, false) => None,
    };
    let env_lock_wait = std::time::Duration::try_from_secs_f64(o.env_lock_wait)
        .map_err(|e| anyhow::anyhow!("--env-lock-wait {}: {e}", o.env_lock_wait))?;
    let system = Host {
        reboot_param_path: o.reboot_param_path.clone(),
        env_lock: env_lock.map(|p| (p, env_lock_wait)),
        ..Host::default()
    };
    let opts = ApplyOptions {
        task: &task,
        public_keys: &keys,
        vars,
        system: &system,
        enable_trim: o.enable_trim,
        progress_range: (o.progress_low, o.progress_high),
    };
    let started = std::time::Instant::now();
    let result = if o.framing {
        let mut cb = |e: Event| {
            let mut out = io::stdout().lock();
            let _ = match e {
                Event::Percent(p) => write_frame(&mut out, b"PR", p, ""),
                Event::Info(m) => write_frame(&mut out, b"WN", 0, &m),
            };
        };
        myelin_fw::apply_opened(opened, &mut target, &opts, Some(&mut cb))
    } else if o.quiet {
        let mut cb = |e: Event| {
            if let Event::Info(m) = e {
                eprintln!("myelin-fw: {m}");
            }
        };
        myelin_fw::apply_opened(opened, &mut target, &opts, Some(&mut cb))
    } else if o.numeric || !io::stdout().is_terminal() {
        let mut cb = |e: Event| match e {
            Event::Percent(p) => {
                println!("{p}");
            }
            Event::Info(m) => eprintln!("myelin-fw: {m}"),
        };
        myelin_fw::apply_opened(opened, &mut target, &opts, Some(&mut cb))
    } else {
        let bar = indicatif::ProgressBar::new(u64::from(o.progress_high));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{percent:>3}% [{bar:36}] {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let mut cb = |e: Event| match e {
            Event::Percent(p) => bar.set_position(u64::from(p)),
            Event::Info(m) => bar.println(format!("myelin-fw: {m}")),
        };
        let r = myelin_fw::apply_opened(opened, &mut target, &opts, Some(&mut cb));
        bar.finish();
        if r.is_ok() {
            println!(
                "Success!\nElapsed time: {:.3} s",
                started.elapsed().as_secs_f64()
            );
        }
        r
    };
    result?;
    if o.framing {
        rep.success("")?;
    }
    Ok(())
}

/// The library's diagnostics (`log` records) on stderr: warnings always, more with `-v`.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("myelin-fw: {}", r.args());
        }
    }
    fn flush(&self) {}
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbose = match &cli.cmd {
        Some(Cmd::Delta(_)) => false,
        Some(Cmd::Create(o) | Cmd::Apply(o) | Cmd::List(o) | Cmd::Metadata(o)) => o.verbose,
        Some(Cmd::Verify(o) | Cmd::Sign(o) | Cmd::GenKeys(o) | Cmd::Burn(o)) => o.verbose,
        None => cli.opts.verbose,
    };
    if log::set_logger(&StderrLog).is_ok() {
        log::set_max_level(if verbose {
            log::LevelFilter::Debug
        } else {
            log::LevelFilter::Warn
        });
    }
    let (mode, opts) = match cli.cmd {
        Some(Cmd::Create(o)) => (Some(Mode::Create), o),
        Some(Cmd::Apply(o)) => (Some(Mode::Apply), o),
        Some(Cmd::List(o)) => (Some(Mode::List), o),
        Some(Cmd::Metadata(o)) => (Some(Mode::Metadata), o),
        Some(Cmd::Verify(o)) => (Some(Mode::Verify), o),
        Some(Cmd::Sign(o)) => (Some(Mode::Sign), o),
        Some(Cmd::GenKeys(o)) => (Some(Mode::GenKeys), o),
        Some(Cmd::Burn(o)) => (Some(Mode::Burn), o),
        Some(Cmd::Delta(a)) => {
            return match make_delta(&a) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("myelin-fw: {e:#}");
                    ExitCode::from(1)
                }
            };
        }
        None => {
            let o = cli.opts;
            let mode = if o.apply {
                Some(Mode::Apply)
            } else if o.create {
                Some(Mode::Create)
            } else if o.list {
                Some(Mode::List)
            } else if o.metadata {
                Some(Mode::Metadata)
            } else if o.verify {
                Some(Mode::Verify)
            } else if o.sign {
                Some(Mode::Sign)
            } else if o.gen_keys {
                Some(Mode::GenKeys)
            } else if o.detect {
                Some(Mode::Detect)
            } else if o.print_detected {
                Some(Mode::Selected)
            } else if o.sparse_check.is_some() {
                Some(Mode::SparseCheck)
            } else if o.file.is_some() {
                // fwup's easy mode: `myelin-fw x.fw` writes x.fw to an SD card.
                Some(Mode::Burn)
            } else {
                None
            };
            (mode, o)
        }
    };
    if opts.version {
        println!("{}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let rep = Reporter {
        framing: opts.framing,
    };
    let result = match mode {
        Some(m) => run(m, &opts, &rep),
        None => Err(anyhow!(
            "specify a command (create, apply, list, metadata, verify, sign, gen-keys, burn, delta) or one of -a, -c, -l, -m, -S, -V, -g, -D, -z, --sparse-check"
        )),
    };
    let code = match result {
        Ok(()) => 0u8,
        Err(e) => {
            let msg = format!("{e:#}");
            if opts.framing {
                let _ = write_frame(&mut io::stdout().lock(), b"ER", 0, &msg);
            } else {
                eprintln!("myelin-fw: {msg}");
            }
            1
        }
    };
    if opts.exit_handshake {
        let _ = io::stdout().lock().write_all(&[0x1a, code]);
        let _ = io::stdout().flush();
        let mut sink = Vec::new();
        let _ = io::stdin().read_to_end(&mut sink);
    }
    ExitCode::from(code)
}
