//! Fits (placeholder, filled in below).
