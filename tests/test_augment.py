import torch

from mmbalance.data.augment import BatchImageAugment, random_resized_crop_params

from conftest import make_cfg


def test_crop_params_within_bounds_and_seeded():
    g = torch.Generator().manual_seed(0)
    cy, cx, h, w = random_resized_crop_params(500, 40, 60, generator=g)
    assert ((h > 0) & (h <= 1) & (w > 0) & (w <= 1)).all()
    assert ((cy - h / 2 >= -1e-6) & (cy + h / 2 <= 1 + 1e-6) & (cx - w / 2 >= -1e-6) & (cx + w / 2 <= 1 + 1e-6)).all()
    area = h * w
    assert 0.07 <= area.min() and area.max() <= 1 + 1e-6  # sides are rounded to pixels, as in torchvision
    g2 = torch.Generator().manual_seed(0)
    assert torch.equal(cy, random_resized_crop_params(500, 40, 60, generator=g2)[0])


def test_full_crop_with_flip_is_a_mirror_image():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    aug = BatchImageAugment(size=8, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=1.0, mean=None)
    y = aug(x, train=True, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(y, x.flip(-1), atol=1e-4)
    no_flip = BatchImageAugment(size=8, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, mean=None)
    assert torch.allclose(no_flip(x, True, torch.Generator().manual_seed(1)), x, atol=1e-4)


def test_batched_crop_resize_equals_per_sample_antialiased_interpolate():
    """The training crop is resized with antialiasing exactly like F.interpolate / PIL on the cropped image."""
    import torch.nn.functional as F

    from mmbalance.data.augment import crop_resize_antialiased

    g = torch.Generator().manual_seed(3)
    # boxes: big downscale, mild downscale, upscale, a full image, a thin strip
    y0 = torch.tensor([0., 3., 10., 0., 5.])
    x0 = torch.tensor([0., 7., 20., 0., 1.])
    h = torch.tensor([40., 30., 9., 40., 4.])
    w = torch.tensor([57., 31., 12., 57., 50.])
    flip = torch.tensor([False, True, False, True, False])
    for wide in (True, False):  # the two orders of the matrix products
        x = torch.rand(5, 3, 40, 57, generator=g)
        box = (y0, x0, h, w)
        if not wide:
            x, box = x.transpose(-1, -2).contiguous(), (x0, y0, w, h)
        out = crop_resize_antialiased(x, *box, 16, flip)
        for k in range(5):
            a, b, hk, wk = (int(v[k]) for v in box)
            ref = F.interpolate(x[k:k + 1, :, a:a + hk, b:b + wk], size=(16, 16), mode="bilinear",
                                align_corners=False, antialias=True)[0]
            if flip[k]:
                ref = ref.flip(-1)
            assert torch.allclose(out[k], ref, atol=1e-5), (wide, k)
    # a checkerboard downscaled 4x averages to grey (aliasing would keep the extremes)
    board = ((torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2).float()[None, None]
    grey = crop_resize_antialiased(board, torch.zeros(1), torch.zeros(1), torch.full((1,), 64.),
                                   torch.full((1,), 64.), 16)
    assert torch.allclose(grey, torch.full_like(grey, 0.5), atol=0.01)


def test_eval_resizes_uint8_frames_and_normalises():
    x = torch.randint(0, 256, (2, 3, 3, 20, 30), dtype=torch.uint8)  # [B, T, C, H, W]
    y = BatchImageAugment(size=16)(x, train=False)
    assert y.shape == (2, 3, 3, 16, 16) and y.dtype == torch.float32
    assert -3 < y.mean() < 3


def test_training_transform_is_random_per_sample_but_reproducible():
    x = torch.rand(4, 3, 32, 32)
    aug = BatchImageAugment(size=16, mean=None)
    a = aug(x, True, torch.Generator().manual_seed(5))
    b = aug(x, True, torch.Generator().manual_seed(5))
    c = aug(x, True, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_resident_data_trains(tmp_path):
    from mmbalance import Trainer

    s = Trainer(make_cfg("data.resident=true", "train.epochs=1")).fit()
    assert 0 <= s["test"]["acc"] <= 1
