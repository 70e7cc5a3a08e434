//! TEMPORARY stub: replaced by the dialogs branch.
use eframe::egui;
use std::path::PathBuf;
pub enum DialogKind {
    PickFile,
    PickFolder,
    SaveFile,
}
pub struct DialogSpec {
    pub kind: DialogKind,
    pub title: String,
    pub filters: Vec<(String, Vec<String>)>,
    pub file_name: Option<String>,
}
#[derive(Clone, Debug)]
pub enum DialogOutcome<P> {
    Chosen(P, PathBuf),
    Cancelled(P),
    Failed(P, String),
}
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    #[default]
    Auto,
    BuiltIn,
}
pub struct FileDialogs<P> {
    pending: Option<P>,
}
impl<P: Clone> FileDialogs<P> {
    pub fn new(_backend: Backend) -> Self {
        Self { pending: None }
    }
    pub fn open(&mut self, purpose: P, _spec: DialogSpec) {
        self.pending = Some(purpose);
    }
    pub fn is_open(&self) -> bool {
        self.pending.is_some()
    }
    pub fn ui(&mut self, _ctx: &egui::Context) -> Option<DialogOutcome<P>> {
        self.pending.take().map(|p| DialogOutcome::Failed(p, "stub".into()))
    }
}
