"""Every SummaryWriter method called the way tensorboardX 2.6.5's documentation shows it.

The calls follow the `Examples::` blocks of tensorboardX's writer.py docstrings, the shapes its
docstrings state, and its README's demo.py (and examples/demo_*.py) where a method has no example
of its own. tests/test_tensorboardx_docs.py runs this file twice: as it is, and with only the
import line below switched to `from logger_client import SummaryWriter`. It is run in an empty
directory holding `model.onnx`, and writes under `runs/` there (the writers' default log directory).
"""

# The documentation's code, reusing names as it does (`x`, `meta`): checked by running it.
# mypy: ignore-errors

import keyword

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from tensorboardX import SummaryWriter

np.random.seed(0)
torch.manual_seed(0)

# __init__: "create a summary writer with automatically generated folder name."
writer = SummaryWriter()

# add_scalar
x = range(100)
for i in x:
    writer.add_scalar("y=2x", i * 2, i)
writer.add_scalar("y=2x/described", 1.0, 0, display_name="y = 2x", summary_description="twice x")

# add_scalars
r = 5
for i in range(100):
    writer.add_scalars("run_14h", {"xsinx": i * np.sin(i / r), "xcosx": i * np.cos(i / r), "tanx": np.tan(i / r)}, i)

# add_histogram
for i in range(10):
    x = np.random.random(1000)
    writer.add_histogram("distribution centers", x + i, i)

# add_histogram_raw
dummy_data = []
for idx, value in enumerate(range(30)):
    dummy_data += [idx + 0.001] * value
values = np.array(dummy_data).astype(float).reshape(-1)
counts, limits = np.histogram(values)
sum_sq = values.dot(values)
writer.add_histogram_raw(
    tag="hist_dummy_data",
    min=values.min(),
    max=values.max(),
    num=len(values),
    sum=values.sum(),
    sum_squares=sum_sq,
    bucket_limits=limits[1:].tolist(),  # <- note here.
    bucket_counts=counts.tolist(),
    global_step=0,
)

# add_image
img = np.zeros((3, 100, 100))
img[0] = np.arange(0, 10000).reshape(100, 100) / 10000
img[1] = 1 - np.arange(0, 10000).reshape(100, 100) / 10000

img_HWC = np.zeros((100, 100, 3))
img_HWC[:, :, 0] = np.arange(0, 10000).reshape(100, 100) / 10000
img_HWC[:, :, 1] = 1 - np.arange(0, 10000).reshape(100, 100) / 10000

writer.add_image("my_image", img, 0)
# If you have non-default dimension setting, set the dataformats argument.
writer.add_image("my_image_HWC", img_HWC, 0, dataformats="HWC")

# add_images
img_batch = np.zeros((16, 3, 100, 100))
for i in range(16):
    img_batch[i, 0] = np.arange(0, 10000).reshape(100, 100) / 10000 / 16 * i
    img_batch[i, 1] = (1 - np.arange(0, 10000).reshape(100, 100) / 10000) / 16 * i
writer.add_images("my_image_batch", img_batch, 0)

# add_image_with_boxes: box_tensor N x 4 of (xmin, ymin, xmax, ymax), one label per box
writer.add_image_with_boxes(
    "imagebox", torch.zeros(3, 240, 240) * 0.1, torch.Tensor([[10, 10, 40, 40], [40, 40, 60, 60]]), 0, labels=["a", "b"]
)
writer.add_image_with_boxes("imagebox_unlabelled", img_HWC, np.array([[5, 5, 50, 50]]), 1, dataformats="HWC")

# add_figure: a figure, then a list of figures
figure = plt.figure()
plt.plot(np.arange(10), np.arange(10) ** 2)
writer.add_figure("matplotlib/figure", figure, 0)
figures = []
for i in range(2):
    fig = plt.figure()
    plt.bar(["a", "b", "c"], [i, i + 1, i + 2])
    figures.append(fig)
writer.add_figure("matplotlib/figures", figures, 0)

# add_video: vid_tensor (N, T, C, H, W), float in [0, 1]
vid_images = torch.rand(2, 8, 3, 32, 32)
writer.add_video("video", vid_images, 0, fps=4)
writer.add_video("video_uint8", (vid_images * 255).to(torch.uint8), 1, fps=8)

# add_audio: as demo.py (a cosine, 2 seconds) and a stereo (L, C) clip
sample_rate = 44100
freqs = [262, 294, 330, 349, 392, 440, 440, 440, 440, 440, 440]
for n_iter in range(0, 30, 10):
    dummy_audio = torch.zeros(sample_rate * 2)
    for i in range(sample_rate // 10):
        # amplitude of sound should in [-1, 1]
        dummy_audio[i] = np.cos(freqs[n_iter // 10] * np.pi * float(i) / float(sample_rate))
    writer.add_audio("myAudio", dummy_audio, n_iter, sample_rate=sample_rate)
writer.add_audio("stereo", np.random.uniform(-1, 1, (8000, 2)), 0, sample_rate=8000)

# add_text
writer.add_text("lstm", "This is an lstm", 0)
writer.add_text("rnn", "This is an rnn", 10)

# add_graph (examples/demo_graph.py): a model and a tuple of inputs


class Net1(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 10, kernel_size=5)
        self.fc1 = torch.nn.Linear(10 * 12 * 12, 10)

    def forward(self, x):
        x = torch.nn.functional.relu(torch.nn.functional.max_pool2d(self.conv1(x), 2))
        return torch.nn.functional.log_softmax(self.fc1(x.view(-1, 10 * 12 * 12)), dim=1)


dummy_input = torch.rand(13, 1, 28, 28)
with SummaryWriter(comment="Net1") as w:
    w.add_graph(Net1(), (dummy_input,))

# add_onnx_graph (examples/demo_onnx.py)
with SummaryWriter(comment="onnx") as w:
    w.add_onnx_graph("model.onnx")

# add_embedding
meta = []
while len(meta) < 100:
    meta = meta + keyword.kwlist  # get some strings
meta = meta[:100]

for i, v in enumerate(meta):
    meta[i] = v + str(i)

label_img = torch.rand(100, 3, 32, 32)
for i in range(100):
    label_img[i] *= i / 100.0

writer.add_embedding(torch.randn(100, 5), metadata=meta, label_img=label_img)
writer.add_embedding(torch.randn(100, 5), label_img=label_img)
writer.add_embedding(torch.randn(100, 5), metadata=meta)
writer.add_embedding(
    torch.randn(100, 5),
    metadata=[[m, str(i % 2)] for i, m in enumerate(meta)],
    global_step=3,
    tag="with/header",
    metadata_header=["keyword", "parity"],
)

# add_pr_curve
labels = np.random.randint(2, size=100)  # binary label
predictions = np.random.rand(100)
writer.add_pr_curve("pr_curve", labels, predictions, 0)
writer.add_pr_curve("pr_curve", labels, predictions * 0.5, 1, num_thresholds=11, weights=np.random.rand(100))

# add_pr_curve_raw: the counts, precision and recall at each of num_thresholds thresholds
writer.add_pr_curve_raw(
    "pr_curve_raw",
    true_positive_counts=[75, 64, 21, 5],
    false_positive_counts=[150, 105, 18, 0],
    true_negative_counts=[0, 45, 132, 150],
    false_negative_counts=[0, 11, 54, 70],
    precision=[0.3333333, 0.3786982, 0.5384616, 1.0],
    recall=[1.0, 0.8533334, 0.28, 0.0666667],
    global_step=0,
    num_thresholds=4,
)

# add_custom_scalars, add_custom_scalars_multilinechart, add_custom_scalars_marginchart
layout = {
    "Taiwan": {"twse": ["Multiline", ["twse/0050", "twse/2330"]]},
    "USA": {
        "dow": ["Margin", ["dow/aaa", "dow/bbb", "dow/ccc"]],
        "nasdaq": ["Margin", ["nasdaq/aaa", "nasdaq/bbb", "nasdaq/ccc"]],
    },
}
writer.add_custom_scalars(layout)
writer.add_custom_scalars_multilinechart(["twse/0050", "twse/2330"])
writer.add_custom_scalars_marginchart(["twse/0050", "twse/2330", "twse/2006"])
for step in range(3):
    writer.add_scalar("twse/0050", step, step)
    writer.add_scalar("twse/2330", 2 * step, step)

# add_mesh (examples/demo_mesh.py)
vertices_tensor = np.array([[[1, 1, 1], [-1, -1, 1], [1, -1, -1], [-1, 1, -1]]], dtype=float)
colors_tensor = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 0, 255]]], dtype=int)
faces_tensor = np.array([[[0, 2, 3], [0, 3, 1], [0, 1, 2], [1, 3, 2]]], dtype=int)
writer.add_mesh("my_mesh", vertices=vertices_tensor, colors=colors_tensor, faces=faces_tensor)
point_cloud = np.random.uniform(-1, 1, (1, 50, 3))
writer.add_mesh("point_cloud", vertices=point_cloud, config_dict={"material": {"cls": "PointsMaterial", "size": 0.05}})

# use_metadata
with writer.use_metadata(global_step=10):
    writer.add_scalar("loss", 3.0)

# export_scalars_to_json (README's demo.py): the add_scalars values, then close
writer.export_scalars_to_json("./all_scalars.json")
writer.flush()
writer.close()

# add_hparams
with SummaryWriter(comment="hparams") as w:
    for i in range(5):
        w.add_hparams({"lr": 0.1 * i, "bsize": i}, {"hparam/accuracy": 10 * i, "hparam/loss": 10 * i})

print("done")
