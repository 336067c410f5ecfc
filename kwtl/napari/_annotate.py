"""The "Annotate a package" widget: draw the masks a ``kwtl select`` package asks for."""

import json
import weakref
from pathlib import Path

import numpy as np
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

__all__ = ["AnnotateWidget", "PackageItems"]

#: The widget of each viewer (the steps widget opens a new selection in it).
_BY_VIEWER = weakref.WeakKeyDictionary()
_MASK_SUFFIXES = (".png", ".tif", ".tiff")
SOURCE_LAYER, PATCHES_LAYER, MASK_LAYER = "kwtl source", "kwtl patches", "kwtl mask"


class PackageItems:
    """The items of an annotation package: where each lies, its image, its mask file.

    Parameters
    ----------
    folder : str or path-like
        A folder written by :func:`kwtl.workflow.select`.
    """

    def __init__(self, folder):
        from kwtl.workflow import read_selection

        self.folder = Path(folder)
        if not (self.folder / "selection.csv").is_file():
            raise ValueError(
                f"{self.folder} is not a kwtl select package (no selection.csv);"
                " choose the folder given to kwtl select --out"
            )
        self.table = read_selection(self.folder).sort_values("rank").reset_index(drop=True)
        meta_file = self.folder / "selection.json"
        self.metadata = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        self.unit = self.metadata.get("unit", "patch")
        self._sources = {}

    def __len__(self):
        return len(self.table)

    def row(self, k):
        return self.table.iloc[int(k)]

    def box(self, k):
        """``(row, col, height, width)`` of item ``k`` in its source image."""
        row = self.row(k)
        h, w = self.item_image(k).shape
        return int(row["row"]), int(row["col"]), h, w

    def item_image(self, k):
        from kwtl.datasets import read_image

        return read_image(self.folder / self.row(k)["image_file"])

    def mask_path(self, k):
        """The saved mask of item ``k`` (PNG, or the same name as TIFF), or None."""
        path = self.folder / self.row(k)["mask_file"]
        for suffix in (path.suffix,) + _MASK_SUFFIXES:
            if path.with_suffix(suffix).is_file():
                return path.with_suffix(suffix)
        return None

    def n_drawn(self):
        return sum(self.mask_path(k) is not None for k in range(len(self)))

    def source_image(self, k):
        """Item ``k``'s whole source image: from the folder the selection was made from,
        else (moved, or made from arrays) the item's own image at its place on a blank."""
        from kwtl.workflow._files import load_unlabelled

        name = str(self.row(k)["source_image"])
        if name not in self._sources:
            folder = Path(str(self.metadata.get("images", "")))
            found = None
            if folder.is_dir():
                try:
                    arrays, names = load_unlabelled(folder)
                    found = dict(zip(names, arrays))
                except (OSError, ValueError):
                    found = None
            if found is not None:
                self._sources.update(found)
            if name not in self._sources:  # the source is gone: the crops, placed
                rows = [j for j in range(len(self)) if str(self.row(j)["source_image"]) == name]
                boxes = [self.box(j) for j in rows]
                h = max(r + bh for r, _, bh, _ in boxes)
                w = max(c + bw for _, c, _, bw in boxes)
                canvas = np.zeros((h, w), np.uint8)
                for j, (r, c, bh, bw) in zip(rows, boxes):
                    canvas[r : r + bh, c : c + bw] = self.item_image(j)
                self._sources[name] = canvas
        return self._sources[name]

    def items_of_source(self, name):
        return [k for k in range(len(self)) if str(self.row(k)["source_image"]) == str(name)]


class AnnotateWidget(QWidget):
    """Open a ``kwtl select`` package and draw its masks in napari.

    The source image of the current item is shown with every chosen region of that image
    as a numbered rectangle (the ranks of ``selection.csv`` and of the overview pictures;
    the current one in yellow), and a Labels layer over the current region to paint the
    cells in (instance labels: a new label value per cell, or one value for all). "Save"
    writes the layer to the item's ``mask_file`` (PNG, labels kept as they are);
    reopening the package shows the masks already saved.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.items = None
        self.index = 0
        self._dirty = False
        _BY_VIEWER[napari_viewer] = self

        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("annotation package (kwtl select --out)")
        self.browse_button = QPushButton("Browse...")
        self.open_button = QPushButton("Open")
        self.previous_button = QPushButton("< Previous")
        self.save_button = QPushButton("Save mask")
        self.next_button = QPushButton("Next >")
        self.progress_label = QLabel("no package open")
        self.item_label = QLabel("")
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)

        top = QHBoxLayout()
        top.addWidget(self.folder_edit)
        top.addWidget(self.browse_button)
        top.addWidget(self.open_button)
        nav = QHBoxLayout()
        for button in (self.previous_button, self.save_button, self.next_button):
            nav.addWidget(button)
        layout = QVBoxLayout()
        layout.addLayout(top)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.item_label)
        layout.addLayout(nav)
        layout.addWidget(self.status_label)
        layout.addStretch(1)
        self.setLayout(layout)

        self.browse_button.clicked.connect(self._browse)
        self.open_button.clicked.connect(lambda: self.open_package(self.folder_edit.text()))
        self.previous_button.clicked.connect(lambda: self.go(self.index - 1))
        self.next_button.clicked.connect(lambda: self.go(self.index + 1))
        self.save_button.clicked.connect(self.save)
        self._enable(False)

    # --- opening ----------------------------------------------------------------------
    def _browse(self):
        folder = QFileDialog.getExistingDirectory(self, "Open a kwtl annotation package")
        if folder:
            self.folder_edit.setText(folder)
            self.open_package(folder)

    def open_package(self, folder):
        """Open ``folder`` and show its first item without a mask (else the first)."""
        try:
            items = PackageItems(folder)
        except ValueError as err:
            self.status_label.setText(str(err))
            return
        self.items = items
        self.folder_edit.setText(str(items.folder))
        self._enable(True)
        todo = [k for k in range(len(items)) if items.mask_path(k) is None]
        self._dirty = False
        self._shown_source = None
        self.go(todo[0] if todo else 0, force=True)
        self.status_label.setText(
            f"opened {items.folder.name}: draw the cells of each region "
            "in the 'kwtl mask' layer, then Save mask"
        )

    def _enable(self, on):
        for button in (self.previous_button, self.save_button, self.next_button):
            button.setEnabled(on)

    # --- navigation -----------------------------------------------------------------
    def go(self, k, force=False):
        """Show item ``k`` (0-based, in rank order). Unsaved drawing stops the first
        attempt (the status line says so); a second one discards it."""
        if self.items is None:
            return
        k = int(np.clip(k, 0, len(self.items) - 1))
        if self._dirty and not force and k != self.index:
            self._dirty = False  # the next attempt goes through
            self.status_label.setText(
                "this mask has unsaved changes: Save mask, or press again to leave it unsaved"
            )
            return
        self.index = k
        self._show()

    def _show(self):
        from kwtl.datasets import read_mask

        items, k = self.items, self.index
        row = items.row(k)
        name = str(row["source_image"])
        if getattr(self, "_shown_source", None) != name or SOURCE_LAYER not in self.viewer.layers:
            self._set_layer(SOURCE_LAYER, "image", items.source_image(k))
            self._shown_source = name
        same = items.items_of_source(name)
        rects = []
        for j in same:
            r, c, h, w = items.box(j)
            rects.append(
                np.array(
                    [[r, c], [r, c + w - 1], [r + h - 1, c + w - 1], [r + h - 1, c]], dtype=float
                )
            )
        ranks = [int(items.row(j)["rank"]) for j in same]
        colours = ["yellow" if j == k else "red" for j in same]
        if PATCHES_LAYER in self.viewer.layers:
            self.viewer.layers.remove(PATCHES_LAYER)
        self.viewer.add_shapes(
            rects,
            shape_type="rectangle",
            name=PATCHES_LAYER,
            edge_color=colours,
            face_color="transparent",
            edge_width=3,
            features={"rank": ranks},
            text={"string": "#{rank}", "color": "yellow", "size": 10, "anchor": "upper_left"},
        )
        r, c, h, w = items.box(k)
        path = items.mask_path(k)
        labels = read_mask(path) if path is not None else np.zeros((h, w), np.uint32)
        if labels.shape != (h, w):
            self.status_label.setText(
                f"{path.name} is {labels.shape[0]}x{labels.shape[1]}, "
                f"its image {h}x{w}: drawing starts empty"
            )
            labels = np.zeros((h, w), np.uint32)
        layer = self._set_layer(MASK_LAYER, "labels", labels.astype(np.uint32))
        layer.translate = (r, c)
        layer.selected_label = max(1, int(labels.max()) + 1)
        layer.mode = "paint"
        self.viewer.layers.selection.active = layer
        self._watch(layer)
        self._dirty = False
        self.viewer.camera.center = (r + h / 2, c + w / 2)
        self._update_labels()

    def _set_layer(self, name, kind, data):
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            if layer.data.shape == data.shape and (
                kind != "labels" or layer.data.dtype == data.dtype
            ):
                layer.data = data
                return layer
            self.viewer.layers.remove(name)
        add = self.viewer.add_image if kind == "image" else self.viewer.add_labels
        return add(data, name=name)

    def _watch(self, layer):
        if getattr(layer, "_kwtl_watched", False):
            return
        layer.events.paint.connect(self._on_paint)
        layer.events.set_data.connect(self._on_paint)
        layer._kwtl_watched = True

    def _on_paint(self, event=None):
        self._dirty = True

    def _update_labels(self):
        items, k = self.items, self.index
        row = items.row(k)
        drawn = items.n_drawn()
        self.progress_label.setText(f"{drawn} of {len(items)} drawn")
        state = "saved" if items.mask_path(k) is not None else "not drawn yet"
        self.item_label.setText(
            f"#{int(row['rank'])} ({k + 1} of {len(items)}): {row['image_file']} - {state}"
        )
        self.previous_button.setEnabled(k > 0)
        self.next_button.setEnabled(k < len(items) - 1)

    # --- saving ---------------------------------------------------------------------
    def save(self):
        """Write the Labels layer to the current item's ``mask_file`` (labels kept)."""
        from kwtl.datasets import write_mask

        if self.items is None or MASK_LAYER not in self.viewer.layers:
            return None
        labels = np.asarray(self.viewer.layers[MASK_LAYER].data)
        path = self.items.folder / self.items.row(self.index)["mask_file"]
        old = self.items.mask_path(self.index)
        if old is not None and old != path:
            old.unlink()  # one mask per item: the PNG replaces a TIFF drawn elsewhere
        write_mask(path, labels, overwrite=True)
        self._dirty = False
        self._update_labels()
        cells = len(np.unique(labels[labels > 0]))
        self.status_label.setText(
            f"saved {path.relative_to(self.items.folder)} ({cells} label value(s))"
        )
        return path
