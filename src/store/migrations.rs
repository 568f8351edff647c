//! The schema's history, one step per version, each written for both backends side by side
//! in `migrations/NNNN_name.{sqlite,pg}.sql`. A step cannot exist for one backend only: the
//! list below names each step once and takes both files, and a test checks that the folder
//! holds nothing else.

/// One schema step, in both dialects.
pub(super) struct Step {
    /// `NNNN_what`: the files' names without the dialect.
    #[cfg_attr(not(test), allow(dead_code))]
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

macro_rules! step {
    ($name:literal) => {
        Step {
            name: $name,
            sqlite: include_str!(concat!("migrations/", $name, ".sqlite.sql")),
            postgres: include_str!(concat!("migrations/", $name, ".pg.sql")),
        }
    };
}

/// In order; a store records how many it has applied (SQLite `user_version`, PostgreSQL
/// `hookgate_schema`).
pub(super) const STEPS: &[Step] = &[
    step!("0001_init"),
    step!("0002_robot_limits"),
    step!("0003_fingerprints_and_signs"),
    step!("0004_schedules"),
    step!("0005_step_results"),
    step!("0006_console"),
    step!("0007_open_deliveries"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_is_written_for_both_backends_and_nothing_else_lies_in_the_folder() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut expected: Vec<String> = STEPS
            .iter()
            .flat_map(|s| {
                [
                    format!("{}.pg.sql", s.name),
                    format!("{}.sqlite.sql", s.name),
                ]
            })
            .collect();
        expected.sort();
        assert_eq!(files, expected);
        for (i, s) in STEPS.iter().enumerate() {
            assert!(s.name.starts_with(&format!("{:04}_", i + 1)), "{}", s.name);
            assert!(!s.sqlite.trim().is_empty() && !s.postgres.trim().is_empty());
        }
    }
}
