//! Reading back the figures that `dnrg plot` and the explorer's export write.

use std::fs;
use std::path::Path;

/// Texts and the number of polylines (curves) of an SVG, which must be well-formed.
pub fn svg(path: &Path) -> (Vec<String>, usize) {
    let text = fs::read_to_string(path).unwrap();
    let doc =
        roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect();
    let lines = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .count();
    (texts, lines)
}

/// Pixels of a PNG that are clearly coloured (not white, black or grey: axes, grid and text
/// are grey levels), and the image size.
pub fn coloured_pixels(path: &Path) -> (usize, (u32, u32)) {
    let decoder = png::Decoder::new(fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let coloured = buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|px| {
            let (max, min) = (px[..3].iter().max().unwrap(), px[..3].iter().min().unwrap());
            max - min > 60
        })
        .count();
    (coloured, (info.width, info.height))
}
