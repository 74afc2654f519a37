//! What safe mode can still use of a configuration that is invalid as a whole.

use serde::Deserialize;

use super::boot_section::BootConfig;
use super::init_section::InitConfig;
use super::log_section::LogConfig;

/// Best-effort reading of the sections PID 1 needs in safe mode (when the file as a whole is
/// invalid): each of `[init]`, `[boot]` and `[log]` is taken if it alone is valid, else defaults.
pub fn load_fallback(src: &str) -> (InitConfig, BootConfig, LogConfig) {
    // One lenient parse per section (other keys ignored), reusing the strict parser's code.
    #[derive(Deserialize)]
    struct InitOnly {
        #[serde(default)]
        init: InitConfig,
    }
    #[derive(Deserialize)]
    struct BootOnly {
        #[serde(default)]
        boot: BootConfig,
    }
    #[derive(Deserialize)]
    struct LogOnly {
        #[serde(default)]
        log: LogConfig,
    }
    (
        toml::from_str::<InitOnly>(src)
            .map(|s| s.init)
            .unwrap_or_default(),
        toml::from_str::<BootOnly>(src)
            .map(|s| s.boot)
            .unwrap_or_default(),
        toml::from_str::<LogOnly>(src)
            .map(|s| s.log)
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FatalAction;

    #[test]
    fn fallback_keeps_valid_sections() {
        let (init, boot, log) = load_fallback(
            "[init]\nfatal_action = \"hang\"\nshell = \"/bin/sh\"\n[boot]\nenabled = false\n[log]\nkmsg = \"\"\n[[service]]\nbogus = 1\n",
        );
        assert_eq!(init.fatal_action, FatalAction::Hang);
        assert_eq!(init.shell.as_deref(), Some("/bin/sh"));
        assert!(!boot.enabled);
        assert_eq!(log.kmsg, "");
        let (init, boot, _) = load_fallback("[init\n");
        assert_eq!(init, InitConfig::default());
        assert_eq!(boot, BootConfig::default());
        let (init, _, _) = load_fallback("[init]\nfatal_action = 3\n");
        assert_eq!(init, InitConfig::default());
    }
}
