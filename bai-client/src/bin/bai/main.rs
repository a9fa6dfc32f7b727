//! `bai`: the command line for a Backend.AI manager (bai's or the original).
//!
//! It is configured like the official client (`BACKEND_ENDPOINT`, `BACKEND_ACCESS_KEY`,
//! `BACKEND_SECRET_KEY`, … or `~/.config/bai/config.toml`). Data goes to stdout (`--output
//! json` for programs); progress, status lines and errors go to stderr. Exit codes: 0 success,
//! 1 failure, 2 usage error; `bai run` exits with the code's own exit code.

mod commands;
mod output;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use output::Format;

/// Talk to a Backend.AI manager: sessions, folders, administration.
#[derive(Debug, Parser)]
#[command(name = "bai", version, about, propagate_version = true)]
pub struct Cli {
    /// How to print results.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "table")]
    pub output: Format,
    /// The manager's URL (overrides BACKEND_ENDPOINT and the config file).
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint: Option<String>,
    /// No progress bars or spinners.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compute sessions.
    #[command(subcommand, visible_alias = "s")]
    Session(SessionCmd),
    /// Create a session, run code in it and print its output; exits with the code's exit code.
    Run(RunArgs),
    /// Reach an app (service) of a session through a local port, or print a browser link.
    App(AppArgs),
    /// List the apps (services) a session offers.
    Apps {
        /// The session (name or id).
        session: String,
    },
    /// Virtual folders.
    #[command(subcommand, visible_alias = "vf")]
    Vfolder(VfolderCmd),
    /// Resource presets.
    #[command(subcommand)]
    Preset(PresetCmd),
    /// Administration (needs an admin or superadmin keypair).
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Run a GraphQL query and print the `data`.
    Gql {
        /// The query text.
        query: String,
        /// Variables as a JSON object.
        #[arg(long, default_value = "{}")]
        vars: String,
    },
    /// Show the client's configuration (secret hidden) and where it comes from.
    Config,
    /// Show the client's and the server's versions.
    Version,
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `bai app`: a local proxy to an app of a session.
#[derive(Debug, Args)]
pub struct AppArgs {
    /// The session (name or id).
    pub session: String,
    /// The app, e.g. `jupyter` (`bai apps SESSION` lists them).
    pub app: String,
    /// Where the local proxy listens: `[HOST:]PORT`.
    #[arg(long, short = 'b', default_value = "127.0.0.1:8080", value_name = "[HOST:]PORT")]
    pub bind: String,
    /// An argument for starting the app: `--arg "--opt value"`, `--arg --flag` (repeatable).
    #[arg(long = "arg", value_name = "ARGUMENT", allow_hyphen_values = true)]
    pub arguments: Vec<String>,
    /// An environment variable for starting the app, `-e NAME=VALUE` (repeatable).
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE")]
    pub envs: Vec<String>,
    /// Print a link that opens the app in a browser (no local proxy) and exit.
    #[arg(long)]
    pub link: bool,
}

/// What a new session gets.
#[derive(Debug, Args)]
pub struct NewSessionArgs {
    /// The image (reference or alias).
    pub image: String,
    /// The session name (random when omitted).
    #[arg(long, short = 'n')]
    pub name: Option<String>,
    /// A resource request, e.g. `-r cpu=2 -r mem=4g` (repeatable).
    #[arg(long = "resource", short = 'r', value_name = "SLOT=AMOUNT")]
    pub resources: Vec<String>,
    /// An environment variable, e.g. `-e SEED=7` (repeatable).
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    pub environ: Vec<String>,
    /// A folder to mount at /home/work/FOLDER, or at /home/work/DIR with FOLDER=DIR
    /// (repeatable).
    #[arg(long = "mount", short = 'm', value_name = "FOLDER[=DIR]")]
    pub mounts: Vec<String>,
    /// The project to create it in.
    #[arg(long, short = 'g')]
    pub group: Option<String>,
    /// The scaling group.
    #[arg(long)]
    pub scaling_group: Option<String>,
    /// Give up waiting for it after this many seconds (it stays queued).
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub max_wait: u64,
}

/// `bai session …`
#[derive(Debug, Subcommand)]
pub enum SessionCmd {
    /// Create a session and wait until it runs.
    Create {
        /// What it gets.
        #[command(flatten)]
        new: NewSessionArgs,
        /// Make it a batch session running this command.
        #[arg(long, value_name = "COMMAND")]
        batch: Option<String>,
        /// Return as soon as it is queued.
        #[arg(long)]
        enqueue_only: bool,
        /// A tag.
        #[arg(long)]
        tag: Option<String>,
    },
    /// List sessions (live ones by default).
    #[command(visible_alias = "list")]
    Ls {
        /// Every status.
        #[arg(long, conflicts_with_all = ["dead", "running", "status"])]
        all: bool,
        /// Ended sessions only.
        #[arg(long, conflicts_with_all = ["running", "status"])]
        dead: bool,
        /// Running sessions only.
        #[arg(long, conflicts_with = "status")]
        running: bool,
        /// These statuses (comma-separated, e.g. `ERROR,CANCELLED`).
        #[arg(long, short = 's')]
        status: Option<String>,
        /// Admins: one owner's sessions.
        #[arg(long)]
        access_key: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show a session and its kernels.
    Info {
        /// The session name or id.
        session: String,
    },
    /// Destroy sessions.
    #[command(visible_aliases = ["destroy", "kill"])]
    Rm {
        /// Session names or ids.
        #[arg(required = true)]
        sessions: Vec<String>,
        /// Even while it is being scheduled or created.
        #[arg(long, short = 'f')]
        forced: bool,
    },
    /// Restart a session's kernels in place.
    Restart {
        /// The session name or id.
        session: String,
    },
    /// Print a session's console log.
    Logs {
        /// The session name or id.
        session: String,
    },
    /// Follow a session's events until it ends (or Ctrl-C).
    Events {
        /// The session name or id.
        session: String,
        /// Which events.
        #[arg(long, value_enum, default_value = "all")]
        scope: Scope,
    },
    /// Run code in a running session; exits with the code's exit code.
    Exec {
        /// The session name or id.
        session: String,
        /// The code.
        #[arg(long, short = 'c')]
        code: String,
    },
    /// List files in a session (relative to /home/work).
    Files {
        /// The session name or id.
        session: String,
        /// The directory.
        #[arg(default_value = ".")]
        path: String,
    },
    /// Upload files into a session's /home/work (keeping their relative paths).
    Upload {
        /// The session name or id.
        session: String,
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Download files from a session's /home/work (each under its base name).
    Download {
        /// The session name or id.
        session: String,
        /// Paths relative to /home/work.
        #[arg(required = true)]
        files: Vec<String>,
        /// Where to put them.
        #[arg(long, default_value = ".")]
        dest: PathBuf,
    },
}

/// `--scope` of `session events`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Scope {
    /// Session and kernel events.
    All,
    /// Session events.
    Session,
    /// Kernel events.
    Kernel,
}

/// `bai run …`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// What the session gets.
    #[command(flatten)]
    pub new: NewSessionArgs,
    /// The code to run.
    #[arg(long, short = 'c')]
    pub code: String,
    /// Destroy the session afterwards.
    #[arg(long)]
    pub rm: bool,
}

/// `bai vfolder …`
#[derive(Debug, Subcommand)]
pub enum VfolderCmd {
    /// Create a folder.
    Create {
        /// Its name.
        name: String,
        /// The storage host (the manager's default when omitted).
        host: Option<String>,
        /// Make it a project folder of this project.
        #[arg(long, short = 'g')]
        group: Option<String>,
        /// `general`, `model` or `data`.
        #[arg(long, default_value = "general")]
        usage_mode: String,
        /// `rw`, `ro` or `wd`.
        #[arg(long, default_value = "rw")]
        permission: String,
        /// A quota, e.g. `10g`.
        #[arg(long)]
        quota: Option<String>,
    },
    /// List your folders.
    #[command(visible_alias = "list")]
    Ls,
    /// Show a folder.
    Info {
        /// Its name.
        name: String,
    },
    /// List files in a folder.
    Files {
        /// The folder.
        name: String,
        /// The directory.
        #[arg(default_value = ".")]
        path: String,
    },
    /// Create a directory in a folder.
    Mkdir {
        /// The folder.
        name: String,
        /// The directory.
        path: String,
        /// Create parents, and don't mind if it exists.
        #[arg(long, short = 'p')]
        parents: bool,
    },
    /// Upload files (each to its path relative to --base-dir).
    Upload {
        /// The folder.
        name: String,
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Paths in the folder are relative to this directory.
        #[arg(long, short = 'b', default_value = ".")]
        base_dir: PathBuf,
    },
    /// Download files (each to its path under --base-dir).
    Download {
        /// The folder.
        name: String,
        /// Paths in the folder.
        #[arg(required = true)]
        files: Vec<String>,
        /// Where to put them.
        #[arg(long, short = 'b', default_value = ".")]
        base_dir: PathBuf,
        /// Replace files that exist.
        #[arg(long)]
        overwrite: bool,
    },
    /// Delete files in a folder.
    RmFiles {
        /// The folder.
        name: String,
        /// The files.
        #[arg(required = true)]
        files: Vec<String>,
        /// Directories too, with their content.
        #[arg(long, short = 'r')]
        recursive: bool,
    },
    /// Rename a folder.
    Rename {
        /// Its name.
        name: String,
        /// The new name.
        new_name: String,
    },
    /// Delete a folder.
    Rm {
        /// Its name.
        name: String,
    },
    /// The storage hosts you may use.
    Hosts,
    /// Share a folder with users at once (your folder, or a project folder you administer).
    Share {
        /// The folder.
        name: String,
        /// The users' e-mail addresses.
        #[arg(required = true)]
        emails: Vec<String>,
        /// `ro`, `rw` or `wd`.
        #[arg(long, short = 'p', default_value = "rw", value_parser = ["ro", "rw", "wd"])]
        permission: String,
    },
    /// Take a shared folder away from users.
    Unshare {
        /// The folder.
        name: String,
        /// The users' e-mail addresses.
        #[arg(required = true)]
        emails: Vec<String>,
    },
    /// Invite users to one of your folders; they get it once they accept.
    Invite {
        /// The folder.
        name: String,
        /// The users' e-mail addresses.
        #[arg(required = true)]
        emails: Vec<String>,
        /// `ro`, `rw` or `wd`.
        #[arg(long, short = 'p', default_value = "rw", value_parser = ["ro", "rw", "wd"])]
        permission: String,
    },
    /// The invitations sent to you.
    Invitations,
    /// Accept an invitation.
    Accept {
        /// The invitation's id (see `bai vfolder invitations`).
        id: String,
    },
    /// Reject an invitation sent to you (or cancel one you sent).
    Reject {
        /// The invitation's id.
        id: String,
    },
    /// Give up a folder someone shares with you.
    Leave {
        /// The folder.
        name: String,
    },
}

/// `bai preset …`
#[derive(Debug, Subcommand)]
pub enum PresetCmd {
    /// List the presets.
    Ls,
    /// What you may still allocate, and which presets fit.
    Check {
        /// In this scaling group.
        #[arg(long)]
        scaling_group: Option<String>,
    },
}

/// `bai admin …`
#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Agents.
    Agents {
        /// `ALIVE`, `LOST`, `TERMINATED`.
        #[arg(long, short = 's', default_value = "ALIVE")]
        status: String,
        /// Of this scaling group.
        #[arg(long)]
        scaling_group: Option<String>,
    },
    /// Keypairs.
    #[command(subcommand)]
    Keypair(KeypairCmd),
    /// Users.
    #[command(subcommand)]
    User(UserCmd),
    /// Domains.
    Domains,
    /// Projects of a domain.
    Groups {
        /// The domain (yours when omitted).
        #[arg(long, short = 'd')]
        domain: Option<String>,
    },
    /// Images.
    Images,
    /// Scaling groups.
    ScalingGroups,
    /// Keypair resource policies.
    Policies,
}

/// `bai admin keypair …`
#[derive(Debug, Subcommand)]
pub enum KeypairCmd {
    /// List keypairs.
    Ls {
        /// Of this user.
        #[arg(long, short = 'u')]
        email: Option<String>,
    },
    /// Your own keypair.
    Me,
    /// Create a keypair for a user; prints the secret key once.
    Create {
        /// The user's email.
        email: String,
        /// The resource policy.
        #[arg(long, default_value = "default")]
        policy: String,
        /// With admin rights.
        #[arg(long)]
        admin: bool,
        /// Requests per 15 minutes.
        #[arg(long, default_value_t = 5000)]
        rate_limit: u32,
    },
    /// Let a keypair be used again.
    Activate {
        /// The access key.
        access_key: String,
    },
    /// Stop a keypair from being used.
    Deactivate {
        /// The access key.
        access_key: String,
    },
    /// Delete a keypair.
    Rm {
        /// The access key.
        access_key: String,
    },
}

/// `bai admin user …`
#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// List users.
    Ls {
        /// Of this status (`active`, `inactive`, …).
        #[arg(long, short = 's')]
        status: Option<String>,
    },
    /// Create a user (and its keypair).
    Create {
        /// The email.
        email: String,
        /// The password (prefer BAI_NEW_USER_PASSWORD, which stays out of the shell history).
        #[arg(long, env = "BAI_NEW_USER_PASSWORD", hide_env_values = true)]
        password: String,
        /// `user`, `admin`, `superadmin` or `monitor`.
        #[arg(long, default_value = "user")]
        role: String,
        /// The domain.
        #[arg(long, short = 'd', default_value = "default")]
        domain: String,
        /// The full name.
        #[arg(long, default_value = "")]
        full_name: String,
    },
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(commands::run(&cli));
    // Don't wait for lingering connections.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}
