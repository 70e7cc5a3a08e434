//! File dialogs that always show something: the system's (native) dialog where
//! one can be shown, else a built-in egui dialog.
//!
//! The app asks for a path with [`FileDialogs::open`] (what the path is for, the
//! `purpose`, plus a [`DialogSpec`]) and gets one [`DialogOutcome`] back from
//! [`FileDialogs::ui`], which it calls every frame. Neither call blocks the UI.
//!
//! # Native first, built-in as the fallback
//!
//! With [`Backend::Auto`] the native dialog is `rfd` 0.17. On Linux/BSD rfd asks
//! the XDG desktop portal over D-Bus and, when that fails, runs `zenity`; when
//! both fail it only logs and returns `None`, the same value as a user's Cancel.
//! rfd's API has no other signal, so "the native dialog could not be shown" is
//! decided here by two rules:
//!
//! 1. **Before trying** (Linux/BSD): no session bus (neither
//!    `DBUS_SESSION_BUS_ADDRESS` nor `$XDG_RUNTIME_DIR/bus`) and no `zenity` on
//!    `PATH`. rfd would then reach neither the portal nor zenity.
//! 2. **After trying**: rfd answered `None` in under [`TOO_FAST`] (300 ms). A
//!    shown dialog cannot be cancelled by a person that fast, whereas a missing
//!    portal service (`ServiceUnknown`), a missing `libdbus-1.so` or a missing
//!    `zenity` binary all come back in milliseconds. A `None` after that is a
//!    real Cancel. A panic in rfd's thread counts as "could not be shown" too.
//!
//! Either way the failure is remembered for the rest of the process: every later
//! dialog goes straight to the built-in one, which says once why it is used.
//! [`Backend::BuiltIn`], or `QUANTSCOPE_FILE_DIALOG=builtin` in the environment,
//! never tries the native dialog.
//!
//! The native dialog runs on its own thread (on macOS, where dialogs must be on
//! the main thread, it runs inline) while [`FileDialogs::ui`] shows a small
//! "waiting" note.
//!
//! # The built-in dialog
//!
//! An `egui_file` browser (folders, plus the files that match the spec's
//! filters) and, under it, a "Path" field with OK and Cancel, so a path can
//! always be typed or pasted. Choosing in the browser fills in the field.
//! Relative paths start in the browser's folder and `~` is the home folder. The
//! typed path is checked on OK and problems (no such file, a folder where a file
//! is wanted, a save folder that does not exist) are shown in the dialog. Saving
//! over an existing file asks for a second OK. Both parts together fit a
//! 1000 × 700 window.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use eframe::egui;

/// The environment variable that forces the built-in dialog (`builtin`).
pub const ENV_VAR: &str = "QUANTSCOPE_FILE_DIALOG";

/// A native dialog that returns nothing faster than this was never shown.
pub const TOO_FAST: Duration = Duration::from_millis(300);

const BROWSER_ID: &str = "quantscope_file_dialog_browser";
const ENTRY_ID: &str = "quantscope_file_dialog_path";
/// Room under the browser for the "Path" part (its window, margins included).
const ENTRY_HEIGHT: f32 = 150.0;
/// The browser's top edge, below the app's menu bar.
const TOP: f32 = 32.0;

/// What the dialog asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogKind {
    PickFile,
    PickFolder,
    SaveFile,
}

/// What to show in the dialog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialogSpec {
    pub kind: DialogKind,
    pub title: String,
    /// (name, extensions without dot)
    pub filters: Vec<(String, Vec<String>)>,
    /// Suggested file name for SaveFile.
    pub file_name: Option<String>,
}

impl DialogSpec {
    /// A spec of `kind` with a title and no filters.
    pub fn new(kind: DialogKind, title: impl Into<String>) -> Self {
        Self { kind, title: title.into(), filters: Vec::new(), file_name: None }
    }

    /// Adds a filter: a name and extensions without the dot (`"csv"`).
    #[must_use]
    pub fn filter(mut self, name: impl Into<String>, extensions: &[&str]) -> Self {
        self.filters.push((name.into(), extensions.iter().map(|e| (*e).to_owned()).collect()));
        self
    }

    /// Sets the suggested file name (SaveFile).
    #[must_use]
    pub fn file_name(mut self, name: impl Into<String>) -> Self {
        self.file_name = Some(name.into());
        self
    }
}

/// How a dialog ended. The first field is the `purpose` given to [`FileDialogs::open`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialogOutcome<P> {
    Chosen(P, PathBuf),
    Cancelled(P),
    Failed(P, String),
}

/// Which dialog to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// Native where it can be shown, else built-in.
    #[default]
    Auto,
    /// Always the built-in egui dialog.
    BuiltIn,
}

/// The backend to use given the requested one and the value of [`ENV_VAR`]:
/// `builtin` (also `built-in`, `egui`; any case) forces [`Backend::BuiltIn`].
pub fn backend_from_env(requested: Backend, value: Option<&str>) -> Backend {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        Some("builtin" | "built-in" | "built_in" | "egui") => Backend::BuiltIn,
        _ => requested,
    }
}

/// Why the native dialog failed, once it has in this process.
static NATIVE_FAILED: OnceLock<String> = OnceLock::new();

/// What became of one native dialog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NativeVerdict {
    Chosen(PathBuf),
    Cancelled,
    /// It was never shown; the string says why.
    NotShown(String),
}

/// Judges rfd's answer by how long it took (rule 2 of the module doc).
pub fn judge_native(answer: Option<PathBuf>, elapsed: Duration) -> NativeVerdict {
    match answer {
        Some(path) => NativeVerdict::Chosen(path),
        None if elapsed < TOO_FAST => NativeVerdict::NotShown(format!(
            "it returned after {} ms without showing anything",
            elapsed.as_millis()
        )),
        None => NativeVerdict::Cancelled,
    }
}

/// Rule 1 of the module doc, from the facts: `None` when rfd may show something.
pub fn native_unavailable_reason(has_session_bus: bool, has_zenity: bool) -> Option<String> {
    (!has_session_bus && !has_zenity)
        .then(|| "no D-Bus session bus (for the desktop portal) and no zenity".to_owned())
}

/// Rule 1 of the module doc, from this process's environment.
fn native_precheck() -> Option<String> {
    if cfg!(any(
        target_os = "linux",
        target_os = "freebsd",
        target_os = "dragonfly",
        target_os = "netbsd",
        target_os = "openbsd"
    )) {
        let bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|v| !v.is_empty())
            || std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| Path::new(&d).join("bus").exists());
        let zenity = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("zenity").is_file()));
        native_unavailable_reason(bus, zenity)
    } else {
        None
    }
}

/// Does `path` pass the filters? No filters, `*` or an empty extension pass everything.
pub fn matches_filters(path: &Path, filters: &[(String, Vec<String>)]) -> bool {
    if filters.is_empty() {
        return true;
    }
    let ext = path.extension().and_then(OsStr::to_str).map(str::to_ascii_lowercase);
    filters.iter().flat_map(|(_, exts)| exts).any(|e| {
        e.is_empty()
            || e == "*"
            || ext.as_deref() == Some(e.trim_start_matches('.').to_ascii_lowercase().as_str())
    })
}

/// The typed text as a path: `~` is the home folder, relative paths start in `base`.
pub fn resolve_typed(text: &str, base: &Path) -> Option<PathBuf> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let home = || std::env::var_os("HOME").map(PathBuf::from);
    let path = match text.strip_prefix('~') {
        Some("") => home()?,
        Some(rest) if rest.starts_with('/') => home()?.join(rest.trim_start_matches('/')),
        _ => PathBuf::from(text),
    };
    Some(if path.is_absolute() { path } else { base.join(path) })
}

/// Is `path` acceptable for `kind`? The error is for the user to read.
pub fn check_path(kind: DialogKind, path: &Path) -> Result<(), String> {
    let shown = path.display();
    match kind {
        DialogKind::PickFile if path.is_dir() => Err(format!("{shown} is a folder; choose a file.")),
        DialogKind::PickFile if !path.is_file() => Err(format!("{shown} does not exist.")),
        DialogKind::PickFolder if path.is_file() => Err(format!("{shown} is a file; choose a folder.")),
        DialogKind::PickFolder if !path.is_dir() => Err(format!("{shown} does not exist.")),
        DialogKind::SaveFile if path.is_dir() => {
            Err(format!("{shown} is a folder; add a file name to save into it."))
        }
        DialogKind::SaveFile => match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) if !parent.is_dir() => {
                Err(format!("The folder {} does not exist.", parent.display()))
            }
            _ if path.file_name().is_none() => Err(format!("{shown} has no file name.")),
            _ => Ok(()),
        },
        DialogKind::PickFile | DialogKind::PickFolder => Ok(()),
    }
}

/// One native dialog under way.
struct Native<P> {
    purpose: P,
    spec: DialogSpec,
    answer: Receiver<(Option<PathBuf>, Duration)>,
}

/// The dialogs of one app: at most one open at a time.
pub struct FileDialogs<P> {
    backend: Backend,
    native: Option<Native<P>>,
    builtin: Option<BuiltIn<P>>,
    /// Outcomes waiting to be returned by [`FileDialogs::ui`].
    finished: VecDeque<DialogOutcome<P>>,
    /// The folder of the last chosen path (this session).
    last_dir: Option<PathBuf>,
    /// The built-in dialog has said why native is not used.
    told_why: bool,
}

impl<P: Clone> FileDialogs<P> {
    /// `QUANTSCOPE_FILE_DIALOG=builtin` in the environment forces BuiltIn.
    pub fn new(backend: Backend) -> Self {
        let backend = backend_from_env(backend, std::env::var(ENV_VAR).ok().as_deref());
        Self {
            backend,
            native: None,
            builtin: None,
            finished: VecDeque::new(),
            last_dir: None,
            told_why: false,
        }
    }

    /// The folder the next dialog starts in (by default the folder of the last
    /// chosen path, else the working directory).
    pub fn set_folder(&mut self, dir: impl Into<PathBuf>) {
        self.last_dir = Some(dir.into());
    }

    /// The backend in use (after the environment override).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a dialog for `purpose`. With Auto: try the native (rfd) dialog; if it could not be shown, open the built-in one instead.
    ///
    /// An open built-in dialog is replaced (its purpose comes back as
    /// `Cancelled`); while a native dialog is open the new request comes back
    /// as `Failed`.
    pub fn open(&mut self, purpose: P, spec: DialogSpec) {
        if self.native.is_some() {
            self.finished.push_back(DialogOutcome::Failed(purpose, "A file dialog is already open.".into()));
            return;
        }
        if let Some(old) = self.builtin.take() {
            self.finished.push_back(DialogOutcome::Cancelled(old.purpose));
        }
        if self.backend == Backend::Auto && NATIVE_FAILED.get().is_none() {
            match native_precheck() {
                None => return self.start_native(purpose, spec),
                Some(reason) => remember_native_failure(reason),
            }
        }
        self.open_builtin(purpose, spec);
    }

    /// Is a dialog (native or built-in) open?
    pub fn is_open(&self) -> bool {
        self.native.is_some() || self.builtin.is_some()
    }

    /// Draws the built-in dialog when one is open; returns an outcome once per finished dialog (native or built-in).
    pub fn ui(&mut self, ctx: &egui::Context) -> Option<DialogOutcome<P>> {
        if let Some(done) = self.finished.pop_front() {
            ctx.request_repaint();
            return Some(done);
        }
        if self.native.is_some() {
            return self.poll_native(ctx);
        }
        let step = self.builtin.as_mut()?.show(ctx);
        let outcome = match step {
            Step::Open => return None,
            Step::Chosen(path) => {
                self.last_dir = path.parent().map(Path::to_path_buf);
                let purpose = self.builtin.take()?.purpose;
                DialogOutcome::Chosen(purpose, path)
            }
            Step::Cancelled => DialogOutcome::Cancelled(self.builtin.take()?.purpose),
        };
        ctx.request_repaint();
        Some(outcome)
    }

    fn open_builtin(&mut self, purpose: P, spec: DialogSpec) {
        let start = self.last_dir.clone().or_else(|| std::env::current_dir().ok()).unwrap_or_default();
        let mut dialog = BuiltIn::new(purpose, spec, start);
        if self.backend == Backend::Auto
            && !self.told_why
            && let Some(why) = NATIVE_FAILED.get()
        {
            dialog.message = Some(Message::Note(format!("System file dialog unavailable ({why}).")));
            self.told_why = true;
        }
        self.builtin = Some(dialog);
    }

    fn start_native(&mut self, purpose: P, spec: DialogSpec) {
        let (tx, rx) = mpsc::channel();
        let dialog = rfd_dialog(&spec, self.last_dir.as_deref());
        let kind = spec.kind;
        let run = move || {
            let started = Instant::now();
            let answer = match kind {
                DialogKind::PickFile => dialog.pick_file(),
                DialogKind::PickFolder => dialog.pick_folder(),
                DialogKind::SaveFile => dialog.save_file(),
            };
            tx.send((answer, started.elapsed())).ok();
        };
        if cfg!(target_os = "macos") {
            run();
        } else if std::thread::Builder::new().name("file-dialog".into()).spawn(run).is_err() {
            remember_native_failure("could not start its thread".into());
            return self.open_builtin(purpose, spec);
        }
        self.native = Some(Native { purpose, spec, answer: rx });
    }

    fn poll_native(&mut self, ctx: &egui::Context) -> Option<DialogOutcome<P>> {
        let verdict = match self.native.as_ref()?.answer.try_recv() {
            Ok((answer, elapsed)) => judge_native(answer, elapsed),
            Err(TryRecvError::Disconnected) => {
                NativeVerdict::NotShown("the system file dialog failed".into())
            }
            Err(TryRecvError::Empty) => {
                waiting_ui(ctx);
                ctx.request_repaint_after(Duration::from_millis(100));
                return None;
            }
        };
        let Native { purpose, spec, .. } = self.native.take()?;
        ctx.request_repaint();
        match verdict {
            NativeVerdict::Chosen(path) => {
                self.last_dir = path.parent().map(Path::to_path_buf);
                Some(DialogOutcome::Chosen(purpose, path))
            }
            NativeVerdict::Cancelled => Some(DialogOutcome::Cancelled(purpose)),
            NativeVerdict::NotShown(why) => {
                remember_native_failure(why);
                self.open_builtin(purpose, spec);
                None
            }
        }
    }
}

fn remember_native_failure(why: String) {
    // Only the first reason is kept; later ones cannot happen (native is no longer tried).
    NATIVE_FAILED.set(why).ok();
}

fn rfd_dialog(spec: &DialogSpec, dir: Option<&Path>) -> rfd::FileDialog {
    let mut dialog = rfd::FileDialog::new().set_title(&spec.title);
    for (name, exts) in &spec.filters {
        dialog = dialog.add_filter(name, exts);
    }
    if let Some(name) = &spec.file_name {
        dialog = dialog.set_file_name(name);
    }
    if let Some(dir) = dir {
        dialog = dialog.set_directory(dir);
    }
    dialog
}

fn waiting_ui(ctx: &egui::Context) {
    egui::Window::new("Waiting for the system file dialog")
        .id(egui::Id::unique("quantscope_file_dialog_waiting"))
        .title_bar(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
        .show(ctx, |ui| {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Waiting for the system file dialog…");
            });
        });
}

/// Gives `egui_file`'s two unnamed text fields accessible names ("Folder" at the
/// top, "File name" at the bottom), for screen readers and `egui_kittest`'s check.
fn name_browser_inputs(ctx: &egui::Context) {
    let layer = egui::LayerId::new(egui::Order::Middle, egui::Id::unique(BROWSER_ID));
    let mut widgets: Vec<(f32, egui::Id)> =
        ctx.viewport(|v| v.this_pass.widgets.get_layer(layer).map(|w| (w.rect.top(), w.id)).collect());
    widgets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut names = ["Folder", "File name"].into_iter();
    for (_, id) in widgets {
        if !ctx.has_accesskit_node(id) {
            continue;
        }
        let unnamed = ctx
            .accesskit_node_builder(id, |n| {
                n.role() == egui::accesskit::Role::TextInput && n.label().is_none()
            })
            .unwrap_or(false);
        if unnamed && let Some(name) = names.next() {
            ctx.accesskit_node_builder(id, |n| n.set_label(name));
        }
    }
}

/// Where the built-in dialog is.
enum Step {
    Open,
    Chosen(PathBuf),
    Cancelled,
}

/// A line under the "Path" field.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Message {
    Error(String),
    Note(String),
}

/// What the "Path" part asks for this frame.
enum EntryAction {
    None,
    Ok,
    Cancel,
}

/// The built-in dialog: an `egui_file` browser and a "Path" field under it.
struct BuiltIn<P> {
    purpose: P,
    spec: DialogSpec,
    start_dir: PathBuf,
    /// Made on the first frame, when the screen size is known.
    browser: Option<egui_file::FileDialog>,
    path_text: String,
    message: Option<Message>,
    /// What the browser showed last frame, to follow its changes into `path_text`.
    seen_selection: Option<PathBuf>,
    seen_dir: PathBuf,
    /// A SaveFile target that exists and was shown once; OK again replaces it.
    confirm_replace: Option<PathBuf>,
    focus_asked: bool,
}

impl<P> BuiltIn<P> {
    fn new(purpose: P, spec: DialogSpec, start_dir: PathBuf) -> Self {
        let path_text = match spec.kind {
            DialogKind::PickFile => String::new(),
            DialogKind::PickFolder => start_dir.display().to_string(),
            DialogKind::SaveFile => {
                start_dir.join(spec.file_name.as_deref().unwrap_or_default()).display().to_string()
            }
        };
        Self {
            purpose,
            spec,
            seen_dir: start_dir.clone(),
            start_dir,
            browser: None,
            path_text,
            message: None,
            seen_selection: None,
            confirm_replace: None,
            focus_asked: false,
        }
    }

    /// The browser's size for this screen: both parts fit 1000 × 700.
    fn browser_size(screen: egui::Rect) -> egui::Vec2 {
        let width = (screen.width() - 40.0).clamp(240.0, 640.0);
        let height = (screen.height() - TOP - ENTRY_HEIGHT - 60.0).clamp(120.0, 400.0);
        egui::vec2(width, height)
    }

    fn make_browser(&self, screen: egui::Rect) -> egui_file::FileDialog {
        let filters = self.spec.filters.clone();
        let kind = self.spec.kind;
        let browser = match kind {
            DialogKind::PickFile => egui_file::FileDialog::open_file(),
            DialogKind::PickFolder => egui_file::FileDialog::select_folder(),
            DialogKind::SaveFile => egui_file::FileDialog::save_file()
                .default_filename(self.spec.file_name.clone().unwrap_or_default()),
        };
        let mut browser = browser
            .title(&self.spec.title)
            .id(egui::Id::unique(BROWSER_ID))
            .initial_path(self.start_dir.clone())
            .anchor(egui::Align2::CENTER_TOP, [0.0, TOP])
            .default_size(Self::browser_size(screen))
            .cancel_button_text("Close".into())
            .show_rename(false)
            .show_new_folder(kind != DialogKind::PickFile)
            .keep_on_top(true)
            .show_files_filter(Box::new(move |p: &Path| {
                kind != DialogKind::PickFolder && matches_filters(p, &filters)
            }));
        browser.open();
        browser
    }

    /// The folder that relative typed paths start in.
    fn base_dir(&self) -> PathBuf {
        self.browser.as_ref().map_or_else(|| self.start_dir.clone(), |b| b.directory().to_path_buf())
    }

    fn show(&mut self, ctx: &egui::Context) -> Step {
        if self.browser.is_none() {
            self.browser = Some(self.make_browser(ctx.content_rect()));
        }
        let Some(browser) = self.browser.as_mut() else { return Step::Cancelled };
        let state = browser.show(ctx).state();
        name_browser_inputs(ctx);
        let picked = browser.path().map(Path::to_path_buf);
        match state {
            egui_file::State::Open => {}
            egui_file::State::Selected => match picked {
                Some(path) => {
                    let step = self.submit(path);
                    if matches!(step, Step::Open)
                        && let Some(b) = self.browser.as_mut()
                    {
                        b.open();
                    }
                    return step;
                }
                None => return Step::Cancelled,
            },
            egui_file::State::Cancelled | egui_file::State::Closed => return Step::Cancelled,
        }
        self.follow_browser();
        match self.entry_ui(ctx) {
            EntryAction::None => Step::Open,
            EntryAction::Cancel => Step::Cancelled,
            EntryAction::Ok => {
                if let Some(path) = resolve_typed(&self.path_text, &self.base_dir()) {
                    self.submit(path)
                } else {
                    self.message = Some(Message::Error("Type a path, or choose one above.".into()));
                    Step::Open
                }
            }
        }
    }

    /// Checks a chosen path; an error or the replace question keeps the dialog open.
    fn submit(&mut self, path: PathBuf) -> Step {
        if let Err(e) = check_path(self.spec.kind, &path) {
            self.message = Some(Message::Error(e));
            return Step::Open;
        }
        if self.spec.kind == DialogKind::SaveFile
            && path.is_file()
            && self.confirm_replace.as_ref() != Some(&path)
        {
            self.message = Some(Message::Note(format!(
                "{} already exists. Press OK again to replace it.",
                path.display()
            )));
            self.path_text = path.display().to_string();
            self.confirm_replace = Some(path);
            return Step::Open;
        }
        Step::Chosen(path)
    }

    /// Copies what the user did in the browser into the "Path" field.
    fn follow_browser(&mut self) {
        let Some(browser) = self.browser.as_ref() else { return };
        let selection = browser.path().map(Path::to_path_buf);
        let dir = browser.directory().to_path_buf();
        let kind = self.spec.kind;
        if selection != self.seen_selection {
            let fits = |p: &Path| if kind == DialogKind::PickFolder { p.is_dir() } else { p.is_file() };
            if let Some(p) = &selection
                && fits(p)
            {
                self.path_text = p.display().to_string();
                self.message = None;
            }
            self.seen_selection = selection;
        }
        if dir != self.seen_dir {
            match kind {
                DialogKind::PickFile => {}
                DialogKind::PickFolder => self.path_text = dir.display().to_string(),
                DialogKind::SaveFile => {
                    let typed = PathBuf::from(self.path_text.trim());
                    let name = typed
                        .file_name()
                        .map(OsStr::to_os_string)
                        .or_else(|| self.spec.file_name.clone().map(Into::into))
                        .unwrap_or_default();
                    self.path_text = dir.join(name).display().to_string();
                }
            }
            self.message = None;
            self.seen_dir = dir;
        }
    }

    /// The "Path" part, stuck under the browser.
    fn entry_ui(&mut self, ctx: &egui::Context) -> EntryAction {
        let screen = ctx.content_rect();
        let size = Self::browser_size(screen);
        let browser_rect = ctx.memory(|m| m.area_rect(egui::Id::unique(BROWSER_ID))).unwrap_or_else(|| {
            egui::Rect::from_min_size(
                egui::pos2(screen.center().x - size.x / 2.0, TOP),
                size + egui::vec2(0.0, 60.0),
            )
        });
        let width = browser_rect.width() - 14.0;
        let base = self.base_dir();
        let mut action = EntryAction::None;
        egui::Window::new("Path entry")
            .id(egui::Id::unique(ENTRY_ID))
            .title_bar(false)
            .resizable(false)
            .fixed_pos(browser_rect.left_bottom() + egui::vec2(0.0, 6.0))
            .show(ctx, |ui| {
                ui.ctx().move_to_top(ui.layer_id());
                ui.set_width(width);
                ui.horizontal(|ui| {
                    let label = ui.label("Path");
                    // Room for OK and Cancel on the same row.
                    let buttons = 120.0;
                    let edit = egui::TextEdit::singleline(&mut self.path_text)
                        .desired_width((ui.available_width() - buttons).max(120.0))
                        .hint_text("type or paste a path");
                    let response = ui.add(edit).labelled_by(label.id);
                    if !self.focus_asked {
                        response.request_focus();
                        self.focus_asked = true;
                    }
                    if response.changed() {
                        self.confirm_replace = None;
                    }
                    if response.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                        action = EntryAction::Ok;
                        // Enter takes the focus away; keep it for fixing a rejected path.
                        response.request_focus();
                    }
                    if ui.button("OK").clicked() {
                        action = EntryAction::Ok;
                    }
                    if ui.button("Cancel").clicked() {
                        action = EntryAction::Cancel;
                    }
                });
                ui.weak(format!("Relative paths start in {}", base.display()));
                match &self.message {
                    Some(Message::Error(e)) => {
                        ui.colored_label(ui.visuals().error_fg_color, e);
                    }
                    Some(Message::Note(n)) => {
                        ui.colored_label(ui.visuals().warn_fg_color, n);
                    }
                    None => {}
                }
            });
        action
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eframe::egui::accesskit::Role;
    use egui_kittest::Harness;
    use egui_kittest::kittest::Queryable;

    #[derive(Debug, PartialEq, Eq, Clone, Copy)]
    enum Purpose {
        Model,
        Csv,
    }

    struct State {
        dialogs: FileDialogs<Purpose>,
        outcomes: Vec<DialogOutcome<Purpose>>,
    }

    fn harness(spec: DialogSpec, purpose: Purpose) -> Harness<'static, State> {
        harness_in(spec, purpose, None)
    }

    fn harness_in(spec: DialogSpec, purpose: Purpose, dir: Option<&Path>) -> Harness<'static, State> {
        let mut dialogs = FileDialogs::new(Backend::BuiltIn);
        if let Some(dir) = dir {
            dialogs.set_folder(dir);
        }
        dialogs.open(purpose, spec);
        let state = State { dialogs, outcomes: Vec::new() };
        let mut h = Harness::builder().with_size(egui::vec2(1000.0, 700.0)).build_ui_state(
            |ui, s: &mut State| {
                if let Some(o) = s.dialogs.ui(ui.ctx()) {
                    s.outcomes.push(o);
                }
            },
            state,
        );
        // `run` also checks that every input has an accessible name.
        h.run();
        h
    }

    fn type_path(h: &mut Harness<'static, State>, path: &Path) {
        h.get_by_role_and_label(Role::TextInput, "Path")
            .set_text_value_accesskit(&path.display().to_string());
        h.run_steps(2);
    }

    fn click_ok(h: &mut Harness<'static, State>) {
        h.get_by_role_and_label(Role::Button, "OK").click();
        h.run_steps(3);
    }

    #[test]
    fn typed_existing_file_is_chosen() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("model.safetensors");
        std::fs::write(&file, b"x").unwrap();
        let spec =
            DialogSpec::new(DialogKind::PickFile, "Open model").filter("safetensors", &["safetensors"]);
        let mut h = harness(spec, Purpose::Model);
        assert!(h.state().dialogs.is_open());
        type_path(&mut h, &file);
        click_ok(&mut h);
        assert_eq!(h.state().outcomes, vec![DialogOutcome::Chosen(Purpose::Model, file)]);
        assert!(!h.state().dialogs.is_open());
    }

    #[test]
    fn browser_shows_matching_files_and_fills_the_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.safetensors"), b"x").unwrap();
        std::fs::write(dir.path().join("b.csv"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let spec = DialogSpec::new(DialogKind::PickFile, "Open model").filter("model", &["safetensors"]);
        let mut h = harness_in(spec, Purpose::Model, Some(dir.path()));
        assert!(h.query_by_label_contains("b.csv").is_none(), "the filter hides b.csv");
        h.get_by_label_contains("sub");
        h.get_by_label_contains("a.safetensors").click();
        h.run();
        let shown = h.get_by_role_and_label(Role::TextInput, "Path").value().unwrap_or_default();
        assert_eq!(PathBuf::from(shown), dir.path().join("a.safetensors"));
        click_ok(&mut h);
        assert_eq!(
            h.state().outcomes,
            vec![DialogOutcome::Chosen(Purpose::Model, dir.path().join("a.safetensors"))]
        );
    }

    #[test]
    fn both_parts_fit_a_1000_by_700_window_without_overlap() {
        for kind in [DialogKind::PickFile, DialogKind::PickFolder, DialogKind::SaveFile] {
            let h = harness(DialogSpec::new(kind, "Fit"), Purpose::Model);
            let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1000.0, 700.0));
            let area = |id: &str| h.ctx.memory(|m| m.area_rect(egui::Id::unique(id))).unwrap();
            let (browser, entry) = (area(BROWSER_ID), area(ENTRY_ID));
            assert!(screen.contains_rect(browser) && screen.contains_rect(entry), "{browser:?} {entry:?}");
            assert!(entry.top() >= browser.bottom(), "{browser:?} {entry:?}");
            for label in ["OK", "Cancel", "Close"] {
                let r = h.get_by_role_and_label(Role::Button, label).rect();
                assert!(screen.contains_rect(r), "{label} at {r:?}");
            }
        }
    }

    #[test]
    fn cancel_returns_cancelled() {
        let mut h = harness(DialogSpec::new(DialogKind::PickFile, "Open model"), Purpose::Model);
        h.get_by_role_and_label(Role::Button, "Cancel").click();
        h.run_steps(3);
        assert_eq!(h.state().outcomes, vec![DialogOutcome::Cancelled(Purpose::Model)]);
        assert!(!h.state().dialogs.is_open());
    }

    #[test]
    fn missing_file_shows_an_error_and_stays_open() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.safetensors");
        let mut h = harness(DialogSpec::new(DialogKind::PickFile, "Open model"), Purpose::Model);
        type_path(&mut h, &missing);
        click_ok(&mut h);
        h.get_by_label_contains("does not exist");
        assert!(h.state().outcomes.is_empty());
        assert!(h.state().dialogs.is_open());
        // A folder is not a file either.
        type_path(&mut h, dir.path());
        click_ok(&mut h);
        h.get_by_label_contains("is a folder");
        assert!(h.state().outcomes.is_empty());
    }

    #[test]
    fn save_returns_a_new_path_and_prefills_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let spec = DialogSpec::new(DialogKind::SaveFile, "Export CSV")
            .filter("CSV", &["csv"])
            .file_name("ranked.csv");
        let mut h = harness(spec, Purpose::Csv);
        let shown = h.get_by_role_and_label(Role::TextInput, "Path").value().unwrap_or_default();
        assert!(shown.ends_with("ranked.csv"), "{shown}");
        let target = dir.path().join("new.csv");
        type_path(&mut h, &target);
        click_ok(&mut h);
        assert_eq!(h.state().outcomes, vec![DialogOutcome::Chosen(Purpose::Csv, target)]);
    }

    #[test]
    fn save_over_an_existing_file_asks_first() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("old.csv");
        std::fs::write(&target, b"a,b").unwrap();
        let mut h = harness(DialogSpec::new(DialogKind::SaveFile, "Export CSV"), Purpose::Csv);
        type_path(&mut h, &target);
        click_ok(&mut h);
        h.get_by_label_contains("already exists");
        assert!(h.state().outcomes.is_empty());
        click_ok(&mut h);
        assert_eq!(h.state().outcomes, vec![DialogOutcome::Chosen(Purpose::Csv, target)]);
    }

    #[test]
    fn save_into_a_missing_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = harness(DialogSpec::new(DialogKind::SaveFile, "Export CSV"), Purpose::Csv);
        type_path(&mut h, &dir.path().join("no_such_dir").join("x.csv"));
        click_ok(&mut h);
        h.get_by_label_contains("does not exist");
        assert!(h.state().outcomes.is_empty());
    }

    #[test]
    fn pick_folder_takes_a_typed_folder() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = harness(DialogSpec::new(DialogKind::PickFolder, "Open folder"), Purpose::Model);
        type_path(&mut h, dir.path());
        click_ok(&mut h);
        assert_eq!(h.state().outcomes, vec![DialogOutcome::Chosen(Purpose::Model, dir.path().to_path_buf())]);
    }

    #[test]
    fn opening_again_cancels_the_open_builtin_dialog() {
        let mut h = harness(DialogSpec::new(DialogKind::PickFile, "Open model"), Purpose::Model);
        h.state_mut().dialogs.open(Purpose::Csv, DialogSpec::new(DialogKind::SaveFile, "Export CSV"));
        h.run_steps(2);
        assert_eq!(h.state().outcomes, vec![DialogOutcome::Cancelled(Purpose::Model)]);
        assert!(h.state().dialogs.is_open());
    }

    #[test]
    fn env_value_forces_builtin() {
        assert_eq!(backend_from_env(Backend::Auto, Some("builtin")), Backend::BuiltIn);
        assert_eq!(backend_from_env(Backend::Auto, Some(" BuiltIn\n")), Backend::BuiltIn);
        assert_eq!(backend_from_env(Backend::Auto, Some("built-in")), Backend::BuiltIn);
        assert_eq!(backend_from_env(Backend::Auto, Some("native")), Backend::Auto);
        assert_eq!(backend_from_env(Backend::Auto, Some("")), Backend::Auto);
        assert_eq!(backend_from_env(Backend::Auto, None), Backend::Auto);
        assert_eq!(backend_from_env(Backend::BuiltIn, None), Backend::BuiltIn);
    }

    #[test]
    fn fast_none_means_not_shown_slow_none_means_cancel() {
        let quick = judge_native(None, Duration::from_millis(5));
        assert!(matches!(quick, NativeVerdict::NotShown(_)), "{quick:?}");
        assert_eq!(judge_native(None, Duration::from_secs(2)), NativeVerdict::Cancelled);
        let p = PathBuf::from("/tmp/x");
        assert_eq!(judge_native(Some(p.clone()), Duration::from_millis(1)), NativeVerdict::Chosen(p));
    }

    #[test]
    fn precheck_needs_a_bus_or_zenity() {
        assert!(native_unavailable_reason(false, false).is_some());
        assert_eq!(native_unavailable_reason(true, false), None);
        assert_eq!(native_unavailable_reason(false, true), None);
    }

    #[test]
    fn filters_and_typed_paths() {
        let f = vec![("model".to_owned(), vec!["safetensors".to_owned(), "json".to_owned()])];
        assert!(matches_filters(Path::new("a/b.safetensors"), &f));
        assert!(matches_filters(Path::new("a/B.JSON"), &f));
        assert!(!matches_filters(Path::new("a/b.csv"), &f));
        assert!(!matches_filters(Path::new("a/noext"), &f));
        assert!(matches_filters(Path::new("a/b.csv"), &[]));
        assert!(matches_filters(Path::new("a/b.csv"), &[("all".into(), vec!["*".into()])]));
        let base = Path::new("/base");
        assert_eq!(resolve_typed("  rel/x.csv ", base), Some(PathBuf::from("/base/rel/x.csv")));
        assert_eq!(resolve_typed("/abs", base), Some(PathBuf::from("/abs")));
        assert_eq!(resolve_typed("   ", base), None);
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(resolve_typed("~/m.json", base), Some(Path::new(&home).join("m.json")));
        }
    }
}
