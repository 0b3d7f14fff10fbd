//! Listing the photographs of a dataset root, sorted, as paths relative to
//! the root. Sorting makes the seeded draw independent of the file system's
//! order, so the same config picks the same images on any machine.

use crate::DataError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// How a dataset root is laid out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceLayout {
    /// ILSVRC-2012 training set: `train/<wnid>/*.JPEG` (the root may be the
    /// folder holding `train/`, or `train/` itself).
    Ilsvrc,
    /// SUN397: `<letter>/<class>/*.jpg`, restricted to a partition list
    /// (`Partitions/Training_01.txt`, ...) found in or beside the root.
    Sun,
    /// Tiny ImageNet: `train/<wnid>/images/*.JPEG`, or with split `val`,
    /// `val/images/*.JPEG`.
    TinyImagenet,
    /// Any folder of images, searched recursively.
    #[default]
    Folder,
}

/// File extensions read as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp", "gif"];

pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// A relative path with `/` separators, the same on every platform: how
/// images are named in manifests and reports.
pub fn portable(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

/// The images of a dataset, sorted, relative to `root`.
pub fn list_images(root: &Path, layout: SourceLayout, split: &str) -> Result<Vec<PathBuf>, DataError> {
    if !root.is_dir() {
        return Err(DataError::MissingSource(root.to_path_buf()));
    }
    let mut images = match layout {
        SourceLayout::Folder => walk(root, root)?,
        SourceLayout::Ilsvrc => {
            let train = root.join("train");
            let base = if train.is_dir() { train } else { root.to_path_buf() };
            walk(&base, root)?
        }
        SourceLayout::TinyImagenet => {
            let folders = match split {
                "val" => vec![root.join("val").join("images")],
                // The SUN default ("Training_01") reads the training set too.
                "train" | "Training_01" => tiny_imagenet_classes(root)?,
                _ => return Err(DataError::UnknownSplit { split: split.to_string(), known: "train, val" }),
            };
            let mut found = Vec::new();
            for folder in folders {
                found.extend(walk(&folder, root)?);
            }
            found
        }
        SourceLayout::Sun if split == "all" => walk(root, root)?,
        SourceLayout::Sun => sun_partition(root, split)?,
    };
    images.sort();
    images.dedup();
    if images.is_empty() {
        return Err(DataError::NoImages(root.to_path_buf()));
    }
    Ok(images)
}

/// `listing` with each picture under a `repeat` path listed that many times
/// (in place, so the listing stays sorted); the longest matching path
/// decides. A repeat path that matches nothing is an error naming it: a
/// typo would otherwise silently change nothing.
pub fn repeat_listed(
    listing: Vec<PathBuf>,
    repeat: &BTreeMap<PathBuf, u32>,
    root: &Path,
) -> Result<Vec<PathBuf>, DataError> {
    if repeat.is_empty() {
        return Ok(listing);
    }
    let mut matched = BTreeSet::new();
    let mut out = Vec::with_capacity(listing.len());
    for path in listing {
        let rule =
            repeat.iter().filter(|(prefix, _)| path.starts_with(prefix)).max_by_key(|(p, _)| p.components().count());
        let times = match rule {
            Some((prefix, &times)) => {
                matched.insert(prefix);
                times
            }
            None => 1,
        };
        out.extend(std::iter::repeat_n(path, times as usize));
    }
    match repeat.keys().find(|prefix| !matched.contains(prefix)) {
        Some(unmatched) => Err(DataError::InvalidConfig(format!(
            "data.repeat: {:?} matches no picture listed under {} (after exclude)",
            portable(unmatched),
            root.display()
        ))),
        None => Ok(out),
    }
}

/// Recursive walk collecting image files; paths relative to `relative_to`.
/// Links to folders are followed (datasets are often linked in); a link
/// back to a folder above it is a cycle, whose files are already listed, so
/// it is passed over.
fn walk(dir: &Path, relative_to: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(true) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.loop_ancestor().is_some() => continue,
            Err(e) => {
                let path = e.path().unwrap_or(dir).to_path_buf();
                let error = e.into_io_error().unwrap_or_else(|| std::io::Error::other("unreadable folder entry"));
                return Err(DataError::io(path)(error));
            }
        };
        let path = entry.path();
        if entry.file_type().is_file() && is_image_path(path) {
            found.push(path.strip_prefix(relative_to).unwrap_or(path).to_path_buf());
        }
    }
    Ok(found)
}

/// Tiny ImageNet's `train/<wnid>/images` folders.
fn tiny_imagenet_classes(root: &Path) -> Result<Vec<PathBuf>, DataError> {
    let train = root.join("train");
    let entries = std::fs::read_dir(&train).map_err(DataError::io(&train))?;
    let mut folders = Vec::new();
    for entry in entries {
        let images = entry.map_err(DataError::io(&train))?.path().join("images");
        if images.is_dir() {
            folders.push(images);
        }
    }
    Ok(folders)
}

/// Reads a SUN397 partition list (lines like `/a/abbey/sun_ajkqrqitspwywirx.jpg`).
fn sun_partition(root: &Path, split: &str) -> Result<Vec<PathBuf>, DataError> {
    let name = format!("{split}.txt");
    let candidates = [root.join("Partitions").join(&name), root.join("..").join("Partitions").join(&name)];
    let Some(list) = candidates.iter().find(|p| p.is_file()) else {
        return Err(DataError::MissingPartition { split: split.to_string(), looked: candidates[0].clone() });
    };
    let text = std::fs::read_to_string(list).map_err(DataError::io(list))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| PathBuf::from(l.trim_start_matches('/')))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_repeat_path_decides_and_the_order_is_kept() {
        let listing: Vec<PathBuf> = ["a/b/y.png", "a/x.png", "c.png"].iter().map(PathBuf::from).collect();
        let repeat = [(PathBuf::from("a"), 2), (PathBuf::from("a/b"), 3)].into();
        let got = repeat_listed(listing, &repeat, Path::new("/root")).unwrap();
        let names: Vec<&str> = got.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(names, ["a/b/y.png", "a/b/y.png", "a/b/y.png", "a/x.png", "a/x.png", "c.png"]);
    }

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn ilsvrc_lists_train_wnid_files_sorted() {
        let dir = tempdir("ilsvrc");
        touch(&dir.join("train/n02/b.JPEG"));
        touch(&dir.join("train/n01/a.JPEG"));
        touch(&dir.join("train/n01/notes.txt"));
        let got = list_images(&dir, SourceLayout::Ilsvrc, "").unwrap();
        assert_eq!(got, vec![PathBuf::from("train/n01/a.JPEG"), PathBuf::from("train/n02/b.JPEG")]);
    }

    #[test]
    fn tiny_imagenet_reads_its_train_and_val_folders() {
        let dir = tempdir("tiny");
        touch(&dir.join("train/n02/images/n02_1.JPEG"));
        touch(&dir.join("train/n01/images/n01_0.JPEG"));
        touch(&dir.join("train/n01/n01_boxes.txt"));
        touch(&dir.join("val/images/val_0.JPEG"));
        std::fs::write(dir.join("wnids.txt"), "n01\nn02\n").unwrap();
        let train = list_images(&dir, SourceLayout::TinyImagenet, "train").unwrap();
        assert_eq!(
            train,
            vec![PathBuf::from("train/n01/images/n01_0.JPEG"), PathBuf::from("train/n02/images/n02_1.JPEG")]
        );
        assert_eq!(list_images(&dir, SourceLayout::TinyImagenet, "Training_01").unwrap(), train, "the default split");
        let val = list_images(&dir, SourceLayout::TinyImagenet, "val").unwrap();
        assert_eq!(val, vec![PathBuf::from("val/images/val_0.JPEG")]);
        let err = list_images(&dir, SourceLayout::TinyImagenet, "test").unwrap_err();
        assert!(err.to_string().contains("test"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_link_cycle_is_listed_once_and_ends() {
        let dir = tempdir("cycle");
        touch(&dir.join("a/one.jpg"));
        std::os::unix::fs::symlink(&dir, dir.join("a/back-to-root")).unwrap();
        std::os::unix::fs::symlink(dir.join("a"), dir.join("linked")).unwrap();
        let got = list_images(&dir, SourceLayout::Folder, "").unwrap();
        // The link to `a` is a second path to the same file (not a cycle);
        // the link back to the root is a cycle and is passed over.
        assert_eq!(got, vec![PathBuf::from("a/one.jpg"), PathBuf::from("linked/one.jpg")]);
    }

    #[test]
    fn sun_reads_the_partition_list() {
        let dir = tempdir("sun");
        touch(&dir.join("a/abbey/one.jpg"));
        touch(&dir.join("b/bar/two.jpg"));
        std::fs::create_dir_all(dir.join("Partitions")).unwrap();
        std::fs::write(dir.join("Partitions/Testing_01.txt"), "/b/bar/two.jpg\n").unwrap();
        let got = list_images(&dir, SourceLayout::Sun, "Testing_01").unwrap();
        assert_eq!(got, vec![PathBuf::from("b/bar/two.jpg")]);
        let err = list_images(&dir, SourceLayout::Sun, "Training_07").unwrap_err();
        assert!(err.to_string().contains("Training_07"), "{err}");
    }

    #[test]
    fn missing_root_and_empty_root_are_named() {
        let dir = tempdir("empty");
        let err = list_images(&dir.join("nope"), SourceLayout::Folder, "").unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let err = list_images(&dir, SourceLayout::Folder, "").unwrap_err();
        assert!(matches!(err, DataError::NoImages(_)));
    }

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("colorize-source-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
