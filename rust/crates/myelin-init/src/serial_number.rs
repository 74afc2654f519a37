//! The device's serial number, the unique part of its hostname.
//!
//! Sources are tried in the configured order and the first non-empty value wins:
//! the U-Boot environment (`nerves_serial_number`, then `serial_number`, as provisioned by
//! fwup-style tools), the device tree's `serial-number`, the `Serial` line of `/proc/cpuinfo`
//! (Raspberry Pi), DMI (`product_serial`, then `product_uuid`; x86), and the first MAC address.
//! Placeholders (all zeros, "Not Specified", "To be filled by O.E.M.") do not count. Nothing
//! found: [`DEFAULT_SERIAL`](crate::hostname::DEFAULT_SERIAL).

use crate::config::SerialSource;
use crate::fw_env::EnvSource;
use crate::sys::Sys;

fn clean(raw: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(raw);
    let s = s
        .trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_string();
    let placeholder = s.chars().all(|c| c == '0' || c == '-' || c == ':')
        || [
            "not specified",
            "to be filled by o.e.m.",
            "default string",
            "none",
        ]
        .contains(&s.to_lowercase().as_str());
    (!s.is_empty() && !placeholder).then_some(s)
}

/// Finds the serial number; also names the source it came from.
pub fn find(
    sources: &[SerialSource],
    uboot_keys: &[String],
    sys: &mut dyn Sys,
    env: &mut dyn EnvSource,
) -> Option<(String, &'static str)> {
    for src in sources {
        let found = match src {
            SerialSource::UbootEnv => env.vars().and_then(|v| {
                uboot_keys
                    .iter()
                    .find_map(|k| v.get(k).and_then(|x| clean(x.as_bytes())))
            }),
            SerialSource::Devicetree => sys
                .read_file("/sys/firmware/devicetree/base/serial-number")
                .ok()
                .and_then(|b| clean(&b)),
            SerialSource::Cpuinfo => sys.read_file("/proc/cpuinfo").ok().and_then(|b| {
                String::from_utf8_lossy(&b).lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim() == "Serial")
                        .then(|| clean(v.as_bytes()))
                        .flatten()
                })
            }),
            SerialSource::Dmi => [
                "/sys/class/dmi/id/product_serial",
                "/sys/class/dmi/id/product_uuid",
            ]
            .iter()
            .find_map(|p| sys.read_file(p).ok().and_then(|b| clean(&b))),
            SerialSource::Mac => sys.read_dir("/sys/class/net").ok().and_then(|ifs| {
                ifs.iter()
                    .filter(|i| i.as_str() != "lo")
                    .find_map(|i| {
                        sys.read_file(&format!("/sys/class/net/{i}/address"))
                            .ok()
                            .and_then(|b| clean(&b))
                    })
                    .map(|m| m.replace(':', ""))
            }),
        };
        if let Some(s) = found {
            let name = match src {
                SerialSource::UbootEnv => "uboot_env",
                SerialSource::Devicetree => "devicetree",
                SerialSource::Cpuinfo => "cpuinfo",
                SerialSource::Dmi => "dmi",
                SerialSource::Mac => "mac",
            };
            return Some((s, name));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fw_env::{FwEnv, NoEnv};
    use crate::sys::fake::FakeSys;
    use myelin_ubootenv::Vars;

    struct Env(Vars);
    impl EnvSource for Env {
        fn vars(&mut self) -> Option<Vars> {
            Some(self.0.clone())
        }
    }

    fn all() -> Vec<SerialSource> {
        crate::config::BootConfig::default().serial_sources
    }

    fn keys() -> Vec<String> {
        crate::config::BootConfig::default().uboot_serial_keys
    }

    fn board() -> FakeSys {
        let mut s = FakeSys::default();
        s.file("/sys/firmware/devicetree/base/serial-number", "dt-1234\0");
        s.file(
            "/proc/cpuinfo",
            "processor\t: 0\nHardware\t: BCM2835\nSerial\t\t: 10000000abcdef12\nModel\t: Pi\n",
        );
        s.file("/sys/class/dmi/id/product_serial", "Not Specified\n");
        s.file(
            "/sys/class/dmi/id/product_uuid",
            "6e9a0c3a-1111-2222-3333-444455556666\n",
        );
        s.file("/sys/class/net/lo/address", "00:00:00:00:00:00\n");
        s.file("/sys/class/net/eth0/address", "b8:27:eb:12:34:56\n");
        s
    }

    #[test]
    fn uboot_env_comes_first_in_key_order() {
        let mut sys = board();
        let mut env = Env(Vars::from([
            ("serial_number".into(), "SN-2".into()),
            ("nerves_serial_number".into(), "SN-1".into()),
        ]));
        assert_eq!(
            find(&all(), &keys(), &mut sys, &mut env),
            Some(("SN-1".into(), "uboot_env"))
        );
        let mut env = Env(Vars::from([("serial_number".into(), "SN-2".into())]));
        assert_eq!(
            find(&all(), &keys(), &mut sys, &mut env),
            Some(("SN-2".into(), "uboot_env"))
        );
    }

    #[test]
    fn board_sources_in_order_skipping_placeholders() {
        let mut sys = board();
        assert_eq!(
            find(&all(), &keys(), &mut sys, &mut NoEnv),
            Some(("dt-1234".into(), "devicetree"))
        );
        sys.files
            .remove("/sys/firmware/devicetree/base/serial-number");
        assert_eq!(
            find(&all(), &keys(), &mut sys, &mut NoEnv).unwrap().0,
            "10000000abcdef12"
        );
        sys.file("/proc/cpuinfo", "Serial\t: 0000000000000000\n");
        assert_eq!(
            find(&all(), &keys(), &mut sys, &mut NoEnv),
            Some(("6e9a0c3a-1111-2222-3333-444455556666".into(), "dmi"))
        );
        sys.file(
            "/sys/class/dmi/id/product_uuid",
            "00000000-0000-0000-0000-000000000000",
        );
        assert_eq!(
            find(&all(), &keys(), &mut sys, &mut NoEnv),
            Some(("b827eb123456".into(), "mac"))
        );
        assert_eq!(find(&[], &keys(), &mut sys, &mut NoEnv), None);
        let mut empty = FakeSys::default();
        assert_eq!(
            find(&all(), &keys(), &mut empty, &mut Env(Vars::new())),
            None
        );
    }

    #[test]
    fn real_fw_env_config() {
        // A real environment image read through fw_env.config, the way the device does it.
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("env.img");
        let vars = Vars::from([("nerves_serial_number".into(), "ABC123".into())]);
        let block =
            myelin_ubootenv::format::encode(&vars, 0x2000, myelin_ubootenv::Layout::Single, 0)
                .unwrap();
        std::fs::write(&img, block).unwrap();
        let cfg = dir.path().join("fw_env.config");
        std::fs::write(&cfg, format!("{} 0x0 0x2000\n", img.display())).unwrap();
        let mut env = FwEnv {
            config: cfg.clone(),
            nerves_config: None,
        };
        assert_eq!(
            env.vars()
                .unwrap()
                .get("nerves_serial_number")
                .map(String::as_str),
            Some("ABC123")
        );
        assert!(
            FwEnv {
                config: dir.path().join("missing"),
                nerves_config: None,
            }
            .vars()
            .is_none()
        );
        // A migrated Nerves device before myelin-kv converted its environment: Myelin's two
        // copies are not valid yet, the Nerves copy is read instead.
        let redundant = dir.path().join("redundant.config");
        std::fs::write(
            &redundant,
            format!("{0} 0x0 0x1000\n{0} 0x1000 0x1000\n", img.display()),
        )
        .unwrap();
        let mut migrating = FwEnv {
            config: redundant.clone(),
            nerves_config: Some(cfg),
        };
        assert_eq!(
            migrating
                .vars()
                .unwrap()
                .get("nerves_serial_number")
                .map(String::as_str),
            Some("ABC123")
        );
        let mut native = FwEnv {
            config: redundant,
            nerves_config: Some(dir.path().join("missing")),
        };
        assert!(native.vars().is_none());
    }
}
