//! Files: the replay and dump files, written the way every billrun CSV is written.

mod csv_file;
pub mod replay_files;

pub use csv_file::write_csv;
