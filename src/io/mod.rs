//! Parameters and the files they travel in: run parameters and their validation (`params`),
//! TOML presets (`preset`), the records of a run (`record`) and their writers (`output`), safe
//! bounded file access (`files`), printable user text (`text`) and the cost estimate checked
//! before a run starts (`estimate`).

pub mod estimate;
pub mod files;
pub mod output;
pub mod params;
pub mod preset;
pub mod record;
pub mod text;
