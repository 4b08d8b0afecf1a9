//! `mlp predict`: classify your own pictures, or an image of the test set.
//!
//! A picture becomes a Fashion-MNIST image the way the data set was made: grey levels, the
//! object light on a dark background (inverted when the background is light), cropped to the
//! object, scaled so that its longer side is 28 pixels (aspect ratio kept), and centred on a
//! 28 × 28 black canvas.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use fmnist_data::{CLASS_NAMES, IMAGE_SIDE, PIXELS, Split, normalise};
use image::{DynamicImage, GrayImage, Luma, imageops};
use mlp_core::{Mlp, Workspace, loss};
use ndarray::Array2;
use serde::Serialize;

use crate::cli::PredictArgs;
use crate::data;
use crate::export::load_any;

#[derive(Serialize)]
struct Guess {
    class: String,
    label: usize,
    probability: f32,
}

#[derive(Serialize)]
struct Prediction {
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    test_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    true_class: Option<String>,
    top3: Vec<Guess>,
}

pub fn run_predict(args: PredictArgs) -> anyhow::Result<ExitCode> {
    let saved = load_any(&args.model, args.activation)?;
    if saved.model.shape().inputs != PIXELS {
        bail!(
            "{}: the model takes {} inputs, not the {PIXELS} pixels of a 28 × 28 image",
            args.model.display(),
            saved.model.shape().inputs
        );
    }
    let names: Vec<String> = if saved.class_names.len() == saved.model.shape().classes {
        saved.class_names.clone()
    } else {
        (0..saved.model.shape().classes)
            .map(|c| CLASS_NAMES.get(c).map_or(c.to_string(), |s| s.to_string()))
            .collect()
    };
    let mut predictions = Vec::new();
    let mut failed = false;

    if let Some(n) = args.test_index {
        let test = data::load(&args.data, Split::Test)?;
        let Some(n) = usize::try_from(n).ok().filter(|&i| i < test.len()) else {
            bail!(
                "--test-index must be between 0 and {} (the test set has {} images), got {n}",
                test.len().saturating_sub(1),
                test.len()
            );
        };
        let mut p = predict(&saved.model, test.image(n), &names);
        p.test_index = Some(n);
        p.true_class = Some(names[test.labels()[n] as usize].clone());
        predictions.push(p);
    }
    for path in &args.images {
        match to_fashion_mnist(path) {
            Ok(pixels) => {
                let mut p = predict(&saved.model, pixels.as_raw(), &names);
                p.image = Some(path.display().to_string());
                predictions.push(p);
            }
            Err(e) => {
                // One line per unusable file; the others are still classified.
                eprintln!("error: {}", crate::one_line(&e));
                failed = true;
            }
        }
    }

    if args.json {
        println!("{}", serde_json::to_string(&predictions)?);
    } else {
        for p in &predictions {
            let what = match (&p.image, p.test_index, &p.true_class) {
                (Some(image), _, _) => image.clone(),
                (None, Some(n), Some(truth)) => format!("test image {n} (true class {truth})"),
                _ => String::new(),
            };
            let top: Vec<String> = p
                .top3
                .iter()
                .map(|g| format!("{} {:.3}", g.class, g.probability))
                .collect();
            println!("{what}: {}", top.join(", "));
        }
    }
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// The three most probable classes of one 28 × 28 image.
fn predict(model: &Mlp, pixels: &[u8], names: &[String]) -> Prediction {
    let mut x = Array2::zeros((1, PIXELS));
    normalise(pixels, x.as_slice_mut().expect("standard layout"));
    let mut ws = Workspace::new(model.shape(), 1);
    let mut p = model.logits(x.view(), &mut ws).to_owned();
    loss::softmax(p.view_mut());
    let mut ranked: Vec<(usize, f32)> = p.row(0).iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let top3 = ranked
        .iter()
        .take(3)
        .map(|&(label, probability)| Guess {
            class: names[label].clone(),
            label,
            probability,
        })
        .collect();
    Prediction {
        image: None,
        test_index: None,
        true_class: None,
        top3,
    }
}

/// Reads a picture and turns it into a Fashion-MNIST image.
pub fn to_fashion_mnist(path: &Path) -> anyhow::Result<GrayImage> {
    let picture = image::ImageReader::open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("{}: cannot read", path.display()))?
        .decode()
        .with_context(|| format!("{}: not a readable PNG or JPEG image", path.display()))?;
    Ok(fashion_mnist_from(&picture))
}

/// Grey, light object on dark, cropped, longer side 28, centred on 28 × 28.
pub fn fashion_mnist_from(picture: &DynamicImage) -> GrayImage {
    // Transparent pixels count as white background.
    let rgba = picture.to_rgba8();
    let mut grey = GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let luma = 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
        let alpha = p[3] as f32 / 255.0;
        Luma([(luma * alpha + 255.0 * (1.0 - alpha)).round() as u8])
    });
    // The background is what the border shows: invert when it is light.
    let (w, h) = grey.dimensions();
    let border: Vec<u8> = grey
        .enumerate_pixels()
        .filter(|(x, y, _)| *x == 0 || *y == 0 || *x == w - 1 || *y == h - 1)
        .map(|(_, _, p)| p.0[0])
        .collect();
    let background = border.iter().map(|&v| v as u32).sum::<u32>() / border.len().max(1) as u32;
    if background > 127 {
        imageops::invert(&mut grey);
    }
    // Crop to the object: pixels clearly brighter than the background.
    // (After inversion the background is dark either way, at most 127.)
    let dark_background = if background > 127 {
        255 - background
    } else {
        background
    };
    let threshold = dark_background as u8 + 32;
    let lit: Vec<(u32, u32)> = grey
        .enumerate_pixels()
        .filter(|(_, _, p)| p.0[0] > threshold)
        .map(|(x, y, _)| (x, y))
        .collect();
    let (x0, y0, x1, y1) = if lit.is_empty() {
        (0, 0, w - 1, h - 1)
    } else {
        lit.iter()
            .fold((u32::MAX, u32::MAX, 0, 0), |(a, b, c, d), &(x, y)| {
                (a.min(x), b.min(y), c.max(x), d.max(y))
            })
    };
    let object = imageops::crop_imm(&grey, x0, y0, x1 - x0 + 1, y1 - y0 + 1).to_image();
    // Longer side to 28, aspect ratio kept, centred.
    let side = IMAGE_SIDE as u32;
    let (ow, oh) = object.dimensions();
    let scale = side as f32 / ow.max(oh) as f32;
    let (nw, nh) = (
        ((ow as f32 * scale).round() as u32).clamp(1, side),
        ((oh as f32 * scale).round() as u32).clamp(1, side),
    );
    let resized = imageops::resize(&object, nw, nh, imageops::FilterType::Triangle);
    let mut canvas = GrayImage::new(side, side);
    imageops::overlay(
        &mut canvas,
        &resized,
        ((side - nw) / 2) as i64,
        ((side - nh) / 2) as i64,
    );
    canvas
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w × h` picture: background `bg`, and a rectangle of `fg` from (x0, y0) to (x1, y1).
    fn picture(w: u32, h: u32, bg: u8, fg: u8, rect: (u32, u32, u32, u32)) -> DynamicImage {
        let (x0, y0, x1, y1) = rect;
        DynamicImage::ImageLuma8(GrayImage::from_fn(w, h, |x, y| {
            Luma([if (x0..x1).contains(&x) && (y0..y1).contains(&y) {
                fg
            } else {
                bg
            }])
        }))
    }

    fn bounding_box(img: &GrayImage) -> (u32, u32, u32, u32) {
        img.enumerate_pixels()
            .filter(|(_, _, p)| p.0[0] > 0)
            .fold((u32::MAX, u32::MAX, 0, 0), |(a, b, c, d), (x, y, _)| {
                (a.min(x), b.min(y), c.max(x + 1), d.max(y + 1))
            })
    }

    #[test]
    fn a_dark_object_on_white_becomes_light_on_black_centred_and_28_tall() {
        // A dark upright rectangle, 40 × 100, off-centre on a white 300 × 200 picture.
        let img = fashion_mnist_from(&picture(300, 200, 250, 20, (10, 50, 50, 150)));
        assert_eq!(img.dimensions(), (28, 28));
        assert_eq!(img.get_pixel(0, 0).0[0], 0, "background is black");
        assert!(img.get_pixel(14, 14).0[0] > 200, "object is light");
        let (x0, y0, x1, y1) = bounding_box(&img);
        assert_eq!((y0, y1), (0, 28), "the longer side fills 28 pixels");
        // Aspect ratio 40:100 → 11 wide, centred.
        assert!((x1 - x0).abs_diff(11) <= 1, "width {}", x1 - x0);
        assert!((x0 + x1).abs_diff(28) <= 1, "centred: {x0}..{x1}");
    }

    #[test]
    fn a_light_object_on_black_is_not_inverted() {
        // A light 28 × 14 band on black: scaled to 28 × 14 and centred, rows 7..21.
        let img = fashion_mnist_from(&picture(56, 56, 0, 230, (14, 20, 42, 34)));
        assert_eq!(img.get_pixel(0, 0).0[0], 0);
        assert!(img.get_pixel(14, 14).0[0] > 200);
        assert_eq!(bounding_box(&img), (0, 7, 28, 21));
    }
}
