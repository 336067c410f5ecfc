"""The README.txt of an annotation package (written by :func:`kwtl.workflow.select`)."""

_README = """\
kwtl annotation package
=======================

What to do
----------
{intro}

For every row of selection.csv:
  1. open its image_file (e.g. {example_image}) in your annotation tool
     (napari, Fiji, QuPath, the Cellpose GUI ...);
  2. draw the cells (foreground);
  3. save the mask at its mask_file (e.g. {example_mask}).

In napari (pip install "kwtl[napari]"): Plugins > kwtl > Annotate a package opens this
folder, shows each region on its source image, and saves each mask where it belongs.

Mask format
-----------
* the same size as its image ({size_text});
* PNG or TIFF (the same name with .tif or .tiff instead of .png is accepted too);
* binary (0 = background, any other value = cell) or instance labels (0 = background,
  1, 2, 3 ... = one value per cell, as napari labels layers and Cellpose write them);
* an item without any cell gets an all-zero mask (do not skip it).

Then run

    kwtl finetune {todo} --out tuned.kwtl

which checks that every mask is there and has the right size, fine-tunes the model on
your masks and writes tuned.kwtl; then

    kwtl predict IMAGES_DIR --model tuned.kwtl --out MASKS_DIR

segments a whole folder.

Files
-----
images/           the {what} to annotate (8-bit grey PNG, as the model sees them)
masks/            put your masks here
overview/         one picture per source image, the chosen regions in red, by rank
selection.csv     one row per item: {columns}
selection.json    how the choice was made (model, selector, parameters, kwtl {version})
model_plft.kwtl   the model the choice was made with (kwtl finetune starts from it)
"""
