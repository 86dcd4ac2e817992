//! Reports: the replay and dump files of §10.

mod csv_file;
pub mod replay_files;

pub use csv_file::write_csv;
