//! DESIGN.md's rule for command lines, checked on a binary's flags: every
//! flag (but `--help`, `--version` and those `exempt`) has a
//! `CAMFLEET_<FLAG>` variable and a config-file key (its long name with
//! `_`, or as `renamed` says); `--config` has no key (it names the file).

/// Whether a config file of type `T` refuses `key` as unknown (a wrong
/// type for a known key is fine: the probe gives every key an array).
pub fn unknown_key<T: serde::de::DeserializeOwned>(key: &str) -> bool {
    toml::from_str::<T>(&format!("{key} = []"))
        .err()
        .is_some_and(|e| e.to_string().contains("unknown field"))
}

/// Walks `command`'s flags; `unknown_key(key)` answers whether the config
/// file refuses `key` as unknown ([`unknown_key`]). Panics naming the first
/// flag that breaks the rule; returns how many flags it checked.
pub fn assert_every_flag_has_a_key_and_a_variable(
    command: &clap::Command,
    exempt: &[&str],
    renamed: &[(&str, &str)],
    unknown_key: impl Fn(&str) -> bool,
) -> usize {
    let mut checked = 0;
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") || exempt.contains(&long) {
            continue;
        }
        let variable = format!("CAMFLEET_{}", long.replace('-', "_").to_uppercase());
        assert_eq!(
            arg.get_env().and_then(|v| v.to_str()),
            Some(variable.as_str()),
            "--{long} needs env = \"{variable}\""
        );
        checked += 1;
        if long == "config" {
            continue;
        }
        let key = renamed
            .iter()
            .find(|(flag, _)| *flag == long)
            .map_or_else(|| long.replace('-', "_"), |(_, key)| (*key).to_owned());
        assert!(!unknown_key(&key), "--{long} has no config key {key}");
    }
    checked
}
