"""The "Select, fine-tune, predict" widget: kwtl's steps in a worker thread."""

from pathlib import Path

import numpy as np
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ._progress import StepCancelled, reporting

__all__ = ["StepsWidget", "split_paths"]


def split_paths(text):
    """Folders typed in one field, separated by ``;`` (or new lines): a list of paths."""
    parts = [p.strip() for chunk in str(text).splitlines() for p in chunk.split(";")]
    return [p for p in parts if p]


class _Relay(QObject):
    """Carries a worker thread's progress to the widget (queued into the GUI thread)."""

    progressed = Signal(str, int, int)


def _line(placeholder, text=""):
    edit = QLineEdit(text)
    edit.setPlaceholderText(placeholder)
    return edit


class StepsWidget(QWidget):
    """Run ``kwtl select``, ``finetune`` and ``predict`` from napari.

    Each step runs in a worker thread (the viewer stays responsive) with a progress bar
    fed by the step's own progress bars and a Cancel button; a cancelled step stops at its
    next progress tick and resumes where it stopped when run again with the same
    settings. Results appear in the viewer: a new package opens in the "Annotate a
    package" widget (or its overview pictures are shown), a fine-tuned model becomes the
    predict tab's model, predicted masks appear as Labels layers.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.result = None
        self.error = None
        self._reporter = None
        self._relay = _Relay()
        self._relay.progressed.connect(self._on_progress)

        # select
        self.select_images = _line("folder of unlabelled images")
        self.select_model = _line("model file or authors:EM ...")
        self.select_budget = QSpinBox()
        self.select_budget.setRange(1, 100000)
        self.select_budget.setValue(16)
        self.select_unit = QComboBox()
        self.select_unit.addItems(["patch", "image"])
        self.select_exclude = _line("earlier packages (round 2 on), separated by ;")
        self.select_out = _line("new package folder")
        self.select_button = QPushButton("Select")
        # finetune
        self.finetune_packages = _line("annotated packages, separated by ;")
        self.finetune_model = _line("start model (default: the first package's PLFT model)")
        self.finetune_steps = QSpinBox()  # the default recipe's optimiser steps
        self.finetune_steps.setRange(1, 100000)
        self.finetune_steps.setValue(250)
        self.finetune_out = _line("model file to write, e.g. tuned.kwtl")
        self.finetune_button = QPushButton("Fine-tune")
        # predict
        self.predict_images = _line("folder of images")
        self.predict_model = _line("model file")
        self.predict_out = _line("output folder")
        self.predict_instances = QCheckBox("instance labels (one value per cell)")
        self.predict_button = QPushButton("Predict")
        # shared
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)

        tabs = QTabWidget()
        for title, rows, button in (
            (
                "Select",
                [
                    ("Images", self.select_images),
                    ("Model", self.select_model),
                    ("Budget", self.select_budget),
                    ("Unit", self.select_unit),
                    ("Exclude", self.select_exclude),
                    ("Package", self.select_out),
                ],
                self.select_button,
            ),
            (
                "Fine-tune",
                [
                    ("Packages", self.finetune_packages),
                    ("From model", self.finetune_model),
                    ("Steps", self.finetune_steps),
                    ("Out", self.finetune_out),
                ],
                self.finetune_button,
            ),
            (
                "Predict",
                [
                    ("Images", self.predict_images),
                    ("Model", self.predict_model),
                    ("Out", self.predict_out),
                    ("", self.predict_instances),
                ],
                self.predict_button,
            ),
        ):
            page = QWidget()
            form = QFormLayout()
            for label, field in rows:
                form.addRow(label, field)
            form.addRow(button)
            page.setLayout(form)
            tabs.addTab(page, title)
        self.tabs = tabs
        bottom = QHBoxLayout()
        bottom.addWidget(self.progress_bar)
        bottom.addWidget(self.cancel_button)
        layout = QVBoxLayout()
        layout.addWidget(tabs)
        layout.addLayout(bottom)
        layout.addWidget(self.status_label)
        layout.addStretch(1)
        self.setLayout(layout)

        self.select_button.clicked.connect(self.run_select)
        self.finetune_button.clicked.connect(self.run_finetune)
        self.predict_button.clicked.connect(self.run_predict)
        self.cancel_button.clicked.connect(self.cancel)

    # --- the steps --------------------------------------------------------------------
    @property
    def running(self):
        return self.worker is not None

    def run_select(self):
        from kwtl import workflow

        exclude = split_paths(self.select_exclude.text()) or None
        kwargs = dict(
            images=self.select_images.text().strip(),
            model=self.select_model.text().strip(),
            budget=int(self.select_budget.value()),
            out=self.select_out.text().strip(),
            unit=self.select_unit.currentText(),
            exclude=exclude,
        )
        self._start("select", workflow.select, kwargs, self._selected)

    def run_finetune(self):
        from kwtl import workflow

        packages = split_paths(self.finetune_packages.text())
        kwargs = dict(
            todo_dir=packages,
            out=self.finetune_out.text().strip(),
            model=self.finetune_model.text().strip() or None,
            steps=int(self.finetune_steps.value()),
        )
        self._start("finetune", workflow.finetune, kwargs, self._finetuned)

    def run_predict(self):
        from kwtl import workflow

        kwargs = dict(
            images=self.predict_images.text().strip(),
            model=self.predict_model.text().strip(),
            out=self.predict_out.text().strip(),
            instances=self.predict_instances.isChecked(),
        )
        self._start("predict", workflow.predict, kwargs, self._predicted)

    def cancel(self):
        """Ask the running step to stop at its next progress tick."""
        if self._reporter is not None:
            self._reporter.cancelled.set()
            self.status_label.setText("cancelling at the next progress tick ...")

    # --- the worker -------------------------------------------------------------------
    def _start(self, name, function, kwargs, on_result):
        from napari.qt.threading import create_worker

        if self.running:
            self.status_label.setText("a step is running; wait for it or cancel it")
            return
        needed = ("todo_dir", "out") if name == "finetune" else ("images", "model", "out")
        names = {"todo_dir": "packages"}
        empty = [names.get(k, k) for k in needed if not kwargs[k]]
        if empty:
            self.status_label.setText(f"{name}: fill in {', '.join(empty)}")
            return
        self.result = self.error = None

        def task():
            with reporting(self._relay.progressed.emit) as reporter:
                self._reporter = reporter
                return function(progress=True, **kwargs)

        # our own "errored" handler: the error is shown here, not re-raised in Qt's loop
        worker = create_worker(
            task,
            _start_thread=False,
            _connect={
                "returned": lambda result: self._done(name, result, on_result),
                "errored": lambda err: self._failed(name, err),
                "finished": self._finished,
            },
        )
        self.worker = worker
        for button in (self.select_button, self.finetune_button, self.predict_button):
            button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress_bar.setRange(0, 0)  # busy until the first tick
        self.status_label.setText(f"{name} running ...")
        worker.start()

    def _on_progress(self, desc, n, total):
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(min(n, max(total, 1)))
        self.progress_bar.setFormat(f"{desc}: %v / %m" if desc else "%v / %m")

    def _done(self, name, result, on_result):
        self.result = result
        self.status_label.setText(f"{name} finished")
        on_result(result)

    def _failed(self, name, err):
        self.error = err
        if isinstance(err, StepCancelled):
            self.status_label.setText(
                f"{name} cancelled; run it again with the same settings to resume"
            )
        else:
            self.status_label.setText(f"{name} failed: {err}")

    def _finished(self):
        self.worker = None
        self._reporter = None
        for button in (self.select_button, self.finetune_button, self.predict_button):
            button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1 if self.error is None else 0)

    # --- results as layers --------------------------------------------------------------
    def _selected(self, result):
        from ._annotate import _BY_VIEWER

        annotate = _BY_VIEWER.get(self.viewer)
        folder = Path(result.path)
        if annotate is not None:
            annotate.open_package(folder)
        else:
            from kwtl.datasets import read_image

            for picture in sorted((folder / "overview").glob("*.png")):
                self.viewer.add_image(read_image(picture), name=f"overview {picture.stem}")
        self.finetune_packages.setText(
            ";".join(split_paths(self.finetune_packages.text()) + [str(folder)])
        )
        self.status_label.setText(
            f"select finished: {len(result.table)} item(s) to annotate in {folder}"
        )

    def _finetuned(self, segmenter):
        out = self.finetune_out.text().strip()
        self.predict_model.setText(out)
        self.status_label.setText(f"fine-tune finished: wrote {out}")

    def _predicted(self, result):
        from kwtl.datasets import read_mask

        for name, path in result.masks.items():
            labels = read_mask(path)
            if not self.predict_instances.isChecked():
                labels = (labels > 0).astype(np.uint8)
            layer_name = f"{name} mask"
            if layer_name in self.viewer.layers:
                self.viewer.layers.remove(layer_name)
            self.viewer.add_labels(labels, name=layer_name)
        self.status_label.setText(f"predict finished: {len(result.masks)} mask(s) in {result.path}")
