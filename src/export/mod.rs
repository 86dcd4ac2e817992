//! Files: the replay and dump files and the usage-history CSV, written the way every
//! billrun CSV is written.

mod csv_file;
pub mod replay_files;
pub mod usage_csv;

pub use csv_file::write_csv;
