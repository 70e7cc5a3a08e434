//! "Save as PNG" for any part of the window: a viewport screenshot, cropped to
//! the part's rectangle and written atomically. The screenshot arrives in a
//! callback, which does the cropping and writing and leaves a status line.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use eframe::egui::{self, Color32, ColorImage, Rect};

/// Where the outcome of the last PNG save is reported (shown in the status bar).
pub type Status = Arc<Mutex<Option<String>>>;

/// The part of `image` under `rect` (points), clamped to the image.
pub fn crop(image: &ColorImage, rect: Rect, pixels_per_point: f32) -> ColorImage {
    let bounds =
        Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(image.width() as f32, image.height() as f32));
    let px = Rect::from_min_max(rect.min * pixels_per_point, rect.max * pixels_per_point).intersect(bounds);
    if px.is_negative() || px.width() < 1.0 || px.height() < 1.0 {
        return ColorImage::new([0, 0], Vec::new());
    }
    image.region(&px, None)
}

/// An RGBA PNG of `image`.
pub fn encode_png(image: &ColorImage) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, image.width() as u32, image.height() as u32);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(|e| e.to_string())?;
    let bytes: Vec<u8> = image.pixels.iter().flat_map(Color32::to_array).collect();
    w.write_image_data(&bytes).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

/// Asks for a screenshot and saves `rect` of it to `path` when it arrives.
pub fn request(ctx: &egui::Context, rect: Rect, path: PathBuf, status: &Status) {
    let ppp = ctx.pixels_per_point();
    let status = Arc::clone(status);
    let repaint = ctx.clone();
    let callback = egui::ScreenshotCallback::new(move |image: Arc<ColorImage>| {
        let region = crop(&image, rect, ppp);
        let result = encode_png(&region).and_then(|bytes| {
            quantscope_engine::write::write_atomic(&path, &bytes).map_err(|e| e.to_string())
        });
        let line = match result {
            Ok(()) => format!("saved {}", path.display()),
            Err(e) => format!("PNG not saved: {e}"),
        };
        if let Ok(mut s) = status.lock() {
            *s = Some(line);
        }
        repaint.request_repaint();
    });
    ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(callback));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_in_pixels_clamps_and_encodes_a_readable_png() {
        // 40 × 20 pixels: left half red, right half blue.
        let pixels: Vec<Color32> =
            (0..20 * 40).map(|i| if i % 40 < 20 { Color32::RED } else { Color32::BLUE }).collect();
        let image = ColorImage::new([40, 20], pixels);
        // At 2 pixels per point, points (10..15, 0..5) are pixels (20..30, 0..10): all blue.
        let part = crop(&image, Rect::from_min_max(egui::pos2(10.0, 0.0), egui::pos2(15.0, 5.0)), 2.0);
        assert_eq!(part.size, [10, 10]);
        assert!(part.pixels.iter().all(|&c| c == Color32::BLUE));
        // A rectangle past the edge is clamped instead of panicking.
        let edge = crop(&image, Rect::from_min_max(egui::pos2(15.0, 5.0), egui::pos2(500.0, 500.0)), 2.0);
        assert_eq!(edge.size, [10, 10]);
        let outside =
            crop(&image, Rect::from_min_max(egui::pos2(900.0, 900.0), egui::pos2(950.0, 950.0)), 1.0);
        assert_eq!(outside.size, [0, 0]);

        let bytes = encode_png(&part).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (10, 10));
        assert_eq!(&buf[..4], &Color32::BLUE.to_array());
    }
}
