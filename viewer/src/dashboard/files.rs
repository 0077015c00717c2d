//! The recordings folder as the dashboard shows it: sessions, their
//! segments with sizes, and downloads that cannot leave the folder.

use std::path::{Component, Path, PathBuf};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{error, Shared};

/// Sessions listed at most, newest first.
const MAX_SESSIONS: usize = 20;

#[derive(Debug, Serialize)]
pub struct SessionListing {
    pub name: String,
    pub files: Vec<FileListing>,
}

#[derive(Debug, Serialize)]
pub struct FileListing {
    /// Relative to the recordings folder, `/`-separated: the download path.
    pub path: String,
    pub size: u64,
    /// Still being written (`.mp4.part`).
    pub open: bool,
}

/// Session folders (`YYYYmmddTHHMMSSZ`), newest first, with every file in
/// them (segments and sensors.csv).
pub fn sessions(root: &Path) -> Vec<SessionListing> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_session_name(n))
        .collect();
    names.sort_unstable_by(|a, b| b.cmp(a));
    names.truncate(MAX_SESSIONS);
    names
        .into_iter()
        .map(|name| {
            let mut files = Vec::new();
            walk(root, &root.join(&name), 0, &mut files);
            files.sort_by(|a, b| a.path.cmp(&b.path));
            SessionListing { name, files }
        })
        .collect()
}

fn is_session_name(name: &str) -> bool {
    name.len() == 16
        && name.ends_with('Z')
        && name.as_bytes()[8] == b'T'
        && name
            .bytes()
            .enumerate()
            .all(|(i, b)| matches!(i, 8 | 15) || b.is_ascii_digit())
}

/// Session / node / camera / segment: three levels below a session at most.
fn walk(root: &Path, dir: &Path, depth: usize, out: &mut Vec<FileListing>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() && depth < 2 {
            walk(root, &path, depth + 1, out);
        } else if meta.is_file() {
            let Ok(relative) = path.strip_prefix(root) else {
                continue;
            };
            let name = relative.to_string_lossy().replace('\\', "/");
            out.push(FileListing {
                open: name.ends_with(".part"),
                path: name,
                size: meta.len(),
            });
        }
    }
}

/// A file under `root` named by a URL path: plain names only (no `..`,
/// no absolute paths, no hidden tricks), and still inside `root` once
/// symbolic links are followed.
pub fn resolve(root: &Path, wanted: &str) -> Option<PathBuf> {
    let relative = Path::new(wanted);
    if wanted.is_empty()
        || !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let root = root.canonicalize().ok()?;
    let path = root.join(relative).canonicalize().ok()?;
    (path.starts_with(&root) && path.is_file()).then_some(path)
}

pub async fn download(State(d): Shared, UrlPath(wanted): UrlPath<String>) -> Response {
    let Some(path) = resolve(&d.recordings, &wanted) else {
        let status =
            if wanted.split('/').any(|p| p == ".." || p.is_empty()) || wanted.starts_with('/') {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::NOT_FOUND
            };
        return error(status, format!("no recording {wanted:?}"));
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => return error(StatusCode::NOT_FOUND, format!("{wanted}: {e}")),
    };
    let content_type = match path.extension().and_then(|e| e.to_str()) {
        Some("mp4") => "video/mp4",
        Some("csv") => "text/csv",
        _ => "application/octet-stream",
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_stay_inside_the_recordings_folder() {
        let root = std::env::temp_dir().join(format!("camfleet-files-{}", std::process::id()));
        let seg = root.join("20261121T101500Z/pi/cam0");
        std::fs::create_dir_all(&seg).unwrap();
        std::fs::write(seg.join("20261121T101500Z.mp4"), b"x").unwrap();
        std::fs::write(root.join("20261121T101500Z/sensors.csv"), b"y").unwrap();
        assert!(resolve(&root, "20261121T101500Z/pi/cam0/20261121T101500Z.mp4").is_some());
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "20261121T101500Z/../../x",
            "",
            "20261121T101500Z/pi",
        ] {
            assert!(resolve(&root, bad).is_none(), "{bad}");
        }
        let listed = sessions(&root);
        assert_eq!(listed.len(), 1);
        let paths: Vec<&str> = listed[0].files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "20261121T101500Z/pi/cam0/20261121T101500Z.mp4",
                "20261121T101500Z/sensors.csv"
            ]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn session_names_are_recognised() {
        assert!(is_session_name("20261121T101500Z"));
        assert!(!is_session_name("sensors"));
        assert!(!is_session_name("20261121X101500Z"));
    }
}
