//! The planner: from a batch of uevents to the modprobe calls that load their drivers.
//!
//! A device whose `add` event carries a `MODALIAS` needs the module whose `modules.alias`
//! pattern matches it, unless a driver is already bound (`DRIVER=` in a coldplugged device:
//! it was built in or loaded earlier). modprobe resolves the alias, so the planner only
//! decides which aliases to ask for: each one once per daemon lifetime (a second device of the
//! same kind needs nothing, and an alias no module matches would fail again), in the order the
//! devices came, and all of a batch in one call, `modprobe -a -b -q ALIAS...`: `-a` takes many
//! names, `-b` honours the blacklist of `/etc/modprobe.d` (aliases must, names typed by hand
//! need not), `-q` keeps "not found" quiet, which is the normal fate of most aliases (a PCI
//! bridge, a CPU feature, a built-in driver). Coldplug on a board with hundreds of devices is
//! one call, or a few: calls are capped at [`MAX_ALIASES_PER_CALL`] arguments.

use std::collections::HashSet;

use crate::event::{Action, Uevent};

/// The most aliases one modprobe call gets, far below any argument length limit.
pub const MAX_ALIASES_PER_CALL: usize = 256;

/// The arguments of one modprobe call before its aliases.
pub const MODPROBE_FLAGS: [&str; 3] = ["-a", "-b", "-q"];

/// Remembers which aliases were asked for.
#[derive(Debug, Default)]
pub struct Planner {
    requested: HashSet<String>,
}

impl Planner {
    /// A planner that has asked for nothing yet.
    pub fn new() -> Planner {
        Planner::default()
    }

    /// The aliases to load for `events`, in calls of at most [`MAX_ALIASES_PER_CALL`].
    pub fn plan<'a>(&mut self, events: impl IntoIterator<Item = &'a Uevent>) -> Vec<Vec<String>> {
        let mut aliases = Vec::new();
        for event in events {
            if event.action != Action::Add || event.get("DRIVER").is_some() {
                continue;
            }
            let alias = event.modalias();
            if alias.is_empty() || self.requested.contains(alias) {
                continue;
            }
            self.requested.insert(alias.to_string());
            aliases.push(alias.to_string());
        }
        aliases
            .chunks(MAX_ALIASES_PER_CALL)
            .map(<[String]>::to_vec)
            .collect()
    }
}

/// The full argument list of one call: the flags, then the aliases.
pub fn modprobe_args(aliases: &[String]) -> Vec<String> {
    MODPROBE_FLAGS
        .iter()
        .map(|s| s.to_string())
        .chain(aliases.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(msg: &str) -> Uevent {
        Uevent::parse(msg.replace('|', "\0").as_bytes()).expect("valid test event")
    }

    #[test]
    fn one_call_per_batch_with_each_alias_once() {
        let events = [
            ev("add@/devices/a/virtio1|SUBSYSTEM=virtio|MODALIAS=virtio:d00000003v00001AF4|"),
            ev("add@/devices/a/virtio2|SUBSYSTEM=virtio|MODALIAS=virtio:d00000003v00001AF4|"),
            ev("add@/devices/a/tty/x|SUBSYSTEM=tty|DEVNAME=ttyS0|"),
            ev(
                "add@/devices/b/1-1|SUBSYSTEM=usb|MODALIAS=usb:v0403p6001d0600dc00dsc00dp00icFFiscFFipFFin00|",
            ),
            ev("remove@/devices/c|SUBSYSTEM=usb|MODALIAS=usb:v1234p0001|"),
            ev("change@/devices/d|SUBSYSTEM=usb|MODALIAS=usb:v1234p0002|"),
        ];
        let mut p = Planner::new();
        assert_eq!(
            p.plan(&events),
            vec![vec![
                "virtio:d00000003v00001AF4".to_string(),
                "usb:v0403p6001d0600dc00dsc00dp00icFFiscFFipFFin00".to_string(),
            ]]
        );
        // Asked once: the same kind of device again plans nothing.
        assert!(p.plan(&events[..2]).is_empty());
        assert_eq!(
            modprobe_args(&["virtio:d00000003v00001AF4".to_string()]),
            ["-a", "-b", "-q", "virtio:d00000003v00001AF4"]
        );
    }

    #[test]
    fn bound_devices_need_no_module() {
        let bound = Uevent::from_sysfs(
            "/devices/pci0000:00/0000:00:1f.2",
            Some("pci"),
            "DRIVER=ahci\nMODALIAS=pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01\n",
        )
        .expect("valid");
        assert!(Planner::new().plan([&bound]).is_empty());
    }

    #[test]
    fn big_batches_are_split() {
        let events: Vec<Uevent> = (0..MAX_ALIASES_PER_CALL + 3)
            .map(|i| ev(&format!("add@/devices/x{i}|MODALIAS=of:Nx{i}|")))
            .collect();
        let calls = Planner::new().plan(&events);
        assert_eq!(
            calls.iter().map(Vec::len).collect::<Vec<_>>(),
            [MAX_ALIASES_PER_CALL, 3]
        );
        assert_eq!(calls[1][2], format!("of:Nx{}", MAX_ALIASES_PER_CALL + 2));
    }
}
