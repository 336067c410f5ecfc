"""The README.txt of an annotation package (written by :func:`kwtl.workflow.select`)."""

_README = """\
kwtl annotation package
=======================

What to do
----------
{intro}

For every row of selection.csv (contact_sheet.png shows them all on one picture):
  1. open its image_file (e.g. {example_image}) in your annotation tool
     (napari, Fiji, QuPath, the Cellpose GUI ...);
  2. draw the cells (foreground);
  3. save the mask at its mask_file (e.g. {example_mask}).

In napari (pip install "kwtl[napari]"): Plugins > kwtl > Annotate a package opens this
folder, shows each region on its source image, and saves each mask where it belongs.

Mask format
-----------
* the same size as its image ({size_text});
* PNG or TIFF (the same name with .tif or .tiff instead of .png is accepted too), not
  JPEG: JPEG is lossy and changes the values at the cells' edges;
* binary (0 = background, any other value = cell) or instance labels (0 = background,
  1, 2, 3 ... = one value per cell, as napari labels layers and Cellpose write them);
  save the mask alone (cells on black), not the picture with cells painted on it;
* an item without any cell gets an all-zero mask (do not skip it).

Then run

    kwtl finetune {todo} --out tuned.kwtl

which checks the masks (all there, the right size, not inverted), fine-tunes the model on
them and writes tuned.kwtl; then

    kwtl predict IMAGES_DIR --model tuned.kwtl --out MASKS_DIR

segments a whole folder.

Files
-----
images/            the {what} to annotate,
                   {look}
model_input/       the same {what} as the model sees them (8-bit grey); kwtl finetune
                   trains on these
masks/             put your masks here
contact_sheet.png  all chosen items on one picture, by rank
overview/          the {n_overviews} source image(s) holding chosen items, the regions in
                   red and numbered by rank
selection.csv      one row per item: {columns}
                   score: {score_text}
selection.json     how the choice was made (model, selector, parameters, kwtl {version})
model_plft.kwtl    the model the choice was made with (kwtl finetune starts from it)
"""
