"""Virtual try-on evaluation: 2-D image quality of try-on results and 3-D depth quality.

- `ssim`: SSIM in the two conventions papers use (HR-VITON's scikit-image grayscale one,
  ACGPN's pytorch-ssim RGB one) and PSNR;
- `inception` + `fid`: the FID InceptionV3 in plain PyTorch on the user's pytorch-fid
  weights, FID, KID and pytorch-fid's statistics files;
- `lpips`: AlexNet LPIPS v0.1 as HR-VITON computes it, from user-supplied weights;
- `depth`: AbsRel / SqRel / RMSE / RMSE-log / delta on M3D-VTON's world-z convention;
- `pointcloud`: back-projection, Chamfer distance and the `rgbd2pcd` coloured `.ply`;
- `metrics`: the registered metrics `tryon_image` and `tryon_depth`.

Importing this package loads none of the heavy parts; each module imports what it needs.
"""
