"""Rebuild assets/samples/ from the public-domain / CC0 photos that scikit-image ships.

Run once by a developer (needs scikit-image); the app itself never imports it.
Each photo is stored as a JPEG (quality 92, longest side at most 640 px).
"""

import json
from pathlib import Path

from PIL import Image
from skimage import data as skdata

OUT = Path(__file__).resolve().parent.parent / "assets" / "samples"

# file name -> (loader in skimage.data, title, licence line taken from its docstring)
PHOTOS = {
    "cat.jpg": ("chelsea.png", "Chelsea the cat", "CC0 by the photographer (Stefan van der Walt)"),
    "coffee.jpg": ("coffee.png", "Cup of coffee",
                   "CC0 by the photographer (Rachel Michetti); courtesy of Pikolo Espresso Bar"),
    "rocket.jpg": ("rocket.jpg", "SpaceX Falcon 9 rocket", "Public domain (released by SpaceX)"),
    "astronaut.jpg": ("astronaut.png", "Astronaut Eileen Collins", "Public domain (NASA)"),
    "cameraman.jpg": ("camera.png", "Cameraman (greyscale)", "CC0 by the photographer (Lav Varshney)"),
    "coins.jpg": ("coins.png", "Greek coins from Pompeii (greyscale)",
                  "No known copyright restrictions (Walters Art Museum)"),
    "hubble.jpg": ("hubble_deep_field.jpg", "Hubble eXtreme Deep Field", "Public domain (NASA)"),
    "retina.jpg": ("retina.jpg", "Fundus photograph of a retina", "CC0 1.0 (Wikimedia Commons, Mikael Häggström)"),
    "brick.jpg": ("brick.png", "Brick wall (greyscale)", "CC0 (CC0Textures, Bricks25)"),
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    src_dir = Path(skdata.__file__).parent
    index = []
    for name, (src, title, licence) in PHOTOS.items():
        im = Image.open(src_dir / src)
        im = im.convert("L" if im.mode == "L" else "RGB")
        im.thumbnail((640, 640), Image.Resampling.LANCZOS)
        im.save(OUT / name, quality=92)
        index.append({"file": name, "title": title, "source": f"scikit-image data/{src}", "licence": licence})
    (OUT / "samples.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
