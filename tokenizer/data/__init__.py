"""Images for the tokenizer: where they come from (sources), the datasets they become (datasets), and how one image
is decoded and transformed (images); mnist_idx reads the IDX files Fashion-MNIST ships in."""

from .datasets import (ArrayImageDataset, FileImageDataset, HFImageDataset, ImageDataset, SkipCounter,
                       StreamedImageDataset, collate_images)
from .images import ImageTransform, UnreadableImage, image_to_rgb
from .sources import FASHION_MNIST_CLASSES, ImageDataConfig, build_image_dataset

__all__ = [
    "ArrayImageDataset", "FASHION_MNIST_CLASSES", "FileImageDataset", "HFImageDataset", "ImageDataConfig",
    "ImageDataset", "ImageTransform", "SkipCounter", "StreamedImageDataset", "UnreadableImage",
    "build_image_dataset", "collate_images", "image_to_rgb",
]
