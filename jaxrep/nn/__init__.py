"""Neural-network layers and small models shared by the papers."""
from jaxrep.nn.cnn import SmallCNN
from jaxrep.nn.conv import Conv, convolution, gemm_conv, input_gradient, kernel_gradient
from jaxrep.nn.normalize import l2_normalize
from jaxrep.nn.patch_conv import PatchConv1D, PatchConv2D, unfold_patches

__all__ = ["Conv", "convolution", "gemm_conv", "input_gradient", "kernel_gradient",
           "l2_normalize", "PatchConv1D", "PatchConv2D", "SmallCNN", "unfold_patches"]
