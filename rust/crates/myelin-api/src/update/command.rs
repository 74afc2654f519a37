//! The update client's command tree, one definition for `myelin-update <cmd>` and
//! `myelinctl fw <cmd>`, so their help texts cannot drift apart.

use super::Request;

/// What a client asks of myelin-update.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// The running slot, whether it is on trial, each slot's firmware, the last install.
    Status,
    /// Install a .fw into the inactive slot: a path on the device, an http(s):// URL, or - for
    /// standard input.
    Install {
        /// Where the .fw comes from.
        source: String,
        /// Reboot into the new firmware once it is installed.
        #[arg(long)]
        reboot: bool,
        /// Print no progress.
        #[arg(short, long)]
        quiet: bool,
        /// Install even a version older than the running one (refused otherwise).
        #[arg(long)]
        allow_downgrade: bool,
    },
    /// Stop the install in progress (the active slot is never touched).
    Cancel,
    /// Commit the running firmware: the next boots stay on it.
    Validate,
    /// Make the other slot the default again, and reboot into it.
    Revert {
        /// Switch, but do not reboot now.
        #[arg(long)]
        no_reboot: bool,
    },
    /// Commit the running firmware and make the other slot unbootable.
    PreventRevert,
    /// Erase /data (it is formatted on the next boot), and reboot.
    FactoryReset {
        /// Erase, but do not reboot now.
        #[arg(long)]
        no_reboot: bool,
    },
    /// Reboot (into an installed firmware).
    Reboot,
}

impl Command {
    /// The request this command makes; `json` asks for machine-readable status.
    pub fn request(&self, json: bool) -> Request<'_> {
        match self {
            Command::Status => Request::Status { json },
            Command::Install {
                source,
                reboot,
                quiet,
                allow_downgrade,
            } => Request::Install {
                source,
                reboot: *reboot,
                quiet: *quiet,
                allow_downgrade: *allow_downgrade,
            },
            Command::Cancel => Request::Cancel,
            Command::Validate => Request::Validate,
            Command::Revert { no_reboot } => Request::Revert { reboot: !no_reboot },
            Command::PreventRevert => Request::PreventRevert,
            Command::FactoryReset { no_reboot } => Request::FactoryReset { reboot: !no_reboot },
            Command::Reboot => Request::Reboot,
        }
    }
}
