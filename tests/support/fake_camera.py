"""Chromium's fake camera playing what a test shows it: `--use-file-for-fake-video-capture`
reads a YUV4MPEG2 file frame by frame as it plays (and loops back to the first frame),
so the test rewrites the frames in place, same size, to change what the camera films
while the page keeps its stream open (a person doing what the page asks)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image


class FakeCamera:
    """A Y4M file of `frames` pictures of `size` at `fps` (YUV 4:2:0, the layout
    Chromium's Y4M parser reads)."""

    def __init__(self, path: Path, size: tuple[int, int] = (640, 480), frames: int = 30,
                 fps: int = 10) -> None:
        self.path, self.size, self.frames = path, size, frames
        self._header = f"YUV4MPEG2 W{size[0]} H{size[1]} F{fps}:1 Ip A1:1 C420jpeg\n".encode()
        self.path.write_bytes(self._header + b"\0" * (self._frame_bytes() * frames))

    def _frame_bytes(self) -> int:
        w, h = self.size
        return len(b"FRAME\n") + w * h + 2 * (w // 2) * (h // 2)

    @property
    def flags(self) -> list[str]:
        return ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={self.path}"]

    def show(self, pictures: Sequence[Image.Image]) -> None:
        """Play `pictures` in a loop from now on, each scaled to fit the camera's frame
        (letterboxed) and held for an equal share of the file's frames."""
        chunks = []
        for index in range(self.frames):
            picture = pictures[min(len(pictures) - 1, index * len(pictures) // self.frames)]
            frame = Image.new("RGB", self.size, (128, 128, 128))  # letterboxed
            scale = min(self.size[0] / picture.width, self.size[1] / picture.height)
            fitted = picture.convert("RGB").resize(
                (round(picture.width * scale), round(picture.height * scale)))
            frame.paste(fitted, ((self.size[0] - fitted.width) // 2,
                                 (self.size[1] - fitted.height) // 2))
            y, cb, cr = frame.convert("YCbCr").split()
            half = (self.size[0] // 2, self.size[1] // 2)
            chunks.append(b"FRAME\n" + y.tobytes() + cb.resize(half).tobytes()
                          + cr.resize(half).tobytes())
        with self.path.open("r+b") as out:  # in place: Chromium keeps the file open
            out.seek(len(self._header))
            out.write(b"".join(chunks))
