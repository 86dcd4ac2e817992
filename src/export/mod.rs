//! Reports: the replay and dump files, the usage-history CSV, and the text reports of
//! `status` and `plan-usage`.

mod csv_file;
pub mod replay_files;
pub mod text;
pub mod usage_csv;

pub use csv_file::write_csv;
