"""PyTorch MLP scripts run on tinytl with only their imports changed.

Each script below is written the way PyTorch tutorials write MLPs. It is run twice:
once under PyTorch's imports (where torch is importable) and once under tinytl's
(``import tinytl as torch``, ``tinytl.nn``, ``tinytl.nn.functional``, ``tinytl.optim``,
``tinytl.utils.data``), on the same synthetic data. The script body is the same text
both times. Where a script has no randomness after initialisation (no Dropout, no
shuffling), both runs start from the same weights (``same_init(model)``, given to the
script) and must give the same losses step for step (float32: 1e-4 relative); with
Dropout or shuffling, the random draws differ between the libraries, so the check is
that the loss falls and the final accuracy is in the same range.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

TORCH_IMPORTS = """
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.utils.data import DataLoader, TensorDataset
"""

TINYTL_IMPORTS = """
import tinytl as torch
import tinytl.nn as nn
import tinytl.nn.functional as F
import tinytl.optim as optim
from tinytl.utils.data import DataLoader, TensorDataset
"""


def _data(n=256, d=784, classes=10, seed=0):
    """Linearly separable-ish synthetic classification data (float32 features, int64 labels)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, d)).astype(np.float32)
    y = rng.integers(0, classes, n)
    x = (0.3 * centers[y] + rng.standard_normal((n, d))).astype(np.float32)
    return x, y.astype(np.int64)


def _init_states():
    """Fixed weights per (name, shape), the same for both libraries."""
    cache = {}

    def weights(name, shape):
        key = (name, tuple(shape))
        if key not in cache:
            rng = np.random.default_rng(zlib.crc32(repr(key).encode()))   # the same in every process
            fan_in = shape[-1] if len(shape) > 1 else shape[0]
            cache[key] = (rng.uniform(-1, 1, shape) / np.sqrt(fan_in)).astype(np.float32)
        return cache[key]
    return weights


def _run(script: str, imports: str, is_torch: bool, **data):
    weights = _init_states()

    def same_init(model):
        state = model.state_dict()
        new = {}
        for k, v in state.items():
            shape = tuple(v.shape)
            if k.endswith("running_var"):
                arr = np.ones(shape, np.float32)
            elif k.endswith("running_mean"):
                arr = np.zeros(shape, np.float32)
            elif k.endswith("num_batches_tracked"):
                new[k] = v
                continue
            else:
                arr = weights(k, shape)
            if is_torch:
                import torch
                new[k] = torch.from_numpy(arr.copy())
            else:
                new[k] = arr.copy()
        model.load_state_dict(new)
        return model

    ns = {"same_init": same_init, "np": np, **data}
    exec(compile(imports + script, "<tutorial script>", "exec"), ns)
    return ns["RESULT"]


def _both(script, **data):
    """(tinytl's RESULT, torch's RESULT or None)."""
    tl_result = _run(script, TINYTL_IMPORTS, False, **data)
    try:
        import torch  # noqa: F401
    except ImportError:
        return tl_result, None
    return tl_result, _run(script, TORCH_IMPORTS, True, **data)


# ---------------------------------------------------------------- scripts ----

ARTICLE = '''
# The article's example: a network for the source task, trained with CrossEntropyLoss and SGD(lr=0.01),
# then a network for the new task that reuses it.
class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = torch.relu(self.fc1(x))
        x = self.fc2(x)
        return x

source_model = same_init(Net())
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(source_model.parameters(), lr=0.01)
source_loader = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(Y)), batch_size=32)
losses = []
for epoch in range(10):
    for inputs, labels in source_loader:
        optimizer.zero_grad()
        outputs = source_model(inputs)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

# the new task: 5 classes; keep the learned fc1, replace the output layer
class NewNet(nn.Module):
    def __init__(self, pretrained):
        super(NewNet, self).__init__()
        self.fc1 = pretrained.fc1
        self.fc2 = nn.Linear(128, 5)

    def forward(self, x):
        x = torch.relu(self.fc1(x))
        return self.fc2(x)

target_model = NewNet(source_model)
target_model.fc2 = same_init(target_model.fc2)
for param in target_model.fc1.parameters():
    param.requires_grad = False
optimizer = optim.SGD(filter(lambda p: p.requires_grad, target_model.parameters()), lr=0.01)
target_loader = DataLoader(TensorDataset(torch.from_numpy(X2), torch.from_numpy(Y2)), batch_size=16)
new_losses = []
for epoch in range(10):
    for inputs, labels in target_loader:
        optimizer.zero_grad()
        loss = criterion(target_model(inputs), labels)
        loss.backward()
        optimizer.step()
        new_losses.append(loss.item())
RESULT = dict(losses=losses, new_losses=new_losses)
'''


def test_the_articles_example_runs_unchanged_and_matches_torch():
    x, y = _data(256, 784, 10, seed=0)
    x2, y2 = _data(80, 784, 5, seed=1)
    got, ref = _both(ARTICLE, X=x, Y=y, X2=x2, Y2=y2)
    assert np.mean(got["losses"][-8:]) < 0.8 * np.mean(got["losses"][:8])
    assert np.mean(got["new_losses"][-5:]) < np.mean(got["new_losses"][:5])
    if ref is not None:
        np.testing.assert_allclose(got["losses"], ref["losses"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got["new_losses"], ref["new_losses"], rtol=1e-4, atol=1e-5)


DROPOUT_ADAM_STEPLR = '''
class MLP(nn.Module):
    def __init__(self, input_size=784, hidden=256, num_classes=10, p=0.2):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(input_size, hidden), nn.ReLU(), nn.Dropout(p),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(p),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.net(x)

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.manual_seed(0)
model = MLP().to(device)
optimizer = optim.Adam(model.parameters(), lr=1e-3)
scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
loss_fn = nn.CrossEntropyLoss()
loader = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(Y)), batch_size=64, shuffle=True)
history, lrs = [], []
for epoch in range(5):
    model.train()
    running = 0.0
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        optimizer.zero_grad()
        loss = loss_fn(model(xb.view(-1, 784)), yb)
        loss.backward()
        optimizer.step()
        running += loss.item() * xb.size(0)
    scheduler.step()
    lrs.append(scheduler.get_last_lr()[0])
    history.append(running / len(loader.dataset))
    print(f"epoch {epoch}: loss {history[-1]:.4f}")
model.eval()
with torch.no_grad():
    out = model(torch.from_numpy(X))
    acc = (out.argmax(dim=1) == torch.from_numpy(Y)).float().mean().item()
RESULT = dict(history=history, lrs=lrs, acc=acc)
'''


def test_dropout_mlp_with_adam_and_steplr():
    x, y = _data(512, 784, 10, seed=2)
    got, ref = _both(DROPOUT_ADAM_STEPLR, X=x, Y=y)
    assert got["history"][-1] < 0.5 * got["history"][0]
    assert got["acc"] > 0.9
    assert got["lrs"] == pytest.approx([1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4])
    if ref is not None:
        assert got["lrs"] == pytest.approx(ref["lrs"], rel=1e-12)
        assert abs(got["acc"] - ref["acc"]) < 0.05


EVALUATION = '''
model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
same_init(model)
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
train_loader = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(Y)), batch_size=32, shuffle=False)
test_loader = DataLoader(TensorDataset(torch.from_numpy(Xt), torch.from_numpy(Yt)), batch_size=50)
for epoch in range(2):
    for i, (images, labels) in enumerate(train_loader):
        outputs = model(images)
        loss = criterion(outputs, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

correct = 0
total = 0
per_class = [0] * 10
with torch.no_grad():
    for images, labels in test_loader:
        outputs = model(images)
        _, predicted = torch.max(outputs.data, 1)
        total += labels.size(0)
        correct += (predicted == labels).sum().item()
        for c in range(10):
            per_class[c] += ((predicted == labels) & (labels == c)).sum().item()
accuracy = 100 * correct / total
print('Accuracy of the network on the test images: %d %%' % accuracy)
RESULT = dict(accuracy=accuracy, per_class=per_class, loss=loss.item())
'''


def test_evaluation_loop_with_torch_max_and_item():
    x, y = _data(320, 784, 10, seed=3)
    xt, yt = _data(200, 784, 10, seed=3)
    got, ref = _both(EVALUATION, X=x, Y=y, Xt=xt[::-1].copy(), Yt=yt[::-1].copy())
    assert got["accuracy"] > 80 and sum(got["per_class"]) == got["accuracy"] * 2
    if ref is not None:
        assert got["accuracy"] == ref["accuracy"] and got["per_class"] == ref["per_class"]
        assert got["loss"] == pytest.approx(ref["loss"], rel=1e-4)


REGRESSION = '''
class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, x):
        return self.layers(x)

model = same_init(Regressor())
loss_function = nn.MSELoss()
optimizer = optim.SGD(model.parameters(), lr=1e-2)
X_t = torch.tensor(X, dtype=torch.float32)
y_t = torch.tensor(Yr, dtype=torch.float32).unsqueeze(1)
losses = []
for epoch in range(60):
    optimizer.zero_grad()
    pred = model(X_t)
    loss = loss_function(pred, y_t)
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
with torch.no_grad():
    mae = torch.abs(model(X_t) - y_t).mean().item()
RESULT = dict(losses=losses, mae=mae)
'''


def test_regression_mlp_with_mse():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((128, 8)).astype(np.float32)
    yr = (np.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2]).astype(np.float32)
    got, ref = _both(REGRESSION, X=x, Yr=yr)
    assert got["losses"][-1] < 0.7 * got["losses"][0]
    if ref is not None:
        np.testing.assert_allclose(got["losses"], ref["losses"], rtol=1e-4, atol=1e-6)
        assert got["mae"] == pytest.approx(ref["mae"], rel=1e-4)


BATCHNORM = '''
class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 64)
        self.bn1 = nn.BatchNorm1d(64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)

model = same_init(BNNet())
optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
loader = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(Y)), batch_size=32)
train_losses = []
for epoch in range(3):
    model.train()
    for data, target in loader:
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        train_losses.append(loss.item())
model.eval()
test_loss = 0
correct = 0
with torch.no_grad():
    for data, target in loader:
        output = model(data)
        test_loss += F.nll_loss(output, target, reduction='sum').item()
        pred = output.argmax(dim=1, keepdim=True)
        correct += pred.eq(target.view_as(pred)).sum().item()
test_loss /= len(loader.dataset)
state = {k: v.cpu().numpy() if hasattr(v, "cpu") else v for k, v in model.state_dict().items()}
RESULT = dict(train_losses=train_losses, test_loss=test_loss, correct=correct,
              running_mean=np.asarray(state["bn1.running_mean"]), keys=list(state),
              nbt=int(np.asarray(state["bn1.num_batches_tracked"])))
'''


def test_batchnorm_mlp_between_train_and_eval():
    x, y = _data(256, 784, 10, seed=5)
    got, ref = _both(BATCHNORM, X=x, Y=y)
    assert got["train_losses"][-1] < got["train_losses"][0]
    assert got["nbt"] == 24 and "bn1.running_var" in got["keys"]
    if ref is not None:
        assert got["keys"] == ref["keys"]
        np.testing.assert_allclose(got["train_losses"], ref["train_losses"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got["running_mean"], ref["running_mean"], rtol=1e-4, atol=1e-5)
        assert got["correct"] == ref["correct"]
        assert got["test_loss"] == pytest.approx(ref["test_loss"], rel=1e-4)


TRANSFER = '''
import copy
pretrained = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
same_init(pretrained)
opt = optim.SGD(pretrained.parameters(), lr=0.05, momentum=0.9)
for xb, yb in DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(Y)), batch_size=64):
    opt.zero_grad()
    F.cross_entropy(pretrained(xb), yb).backward()
    opt.step()

model = copy.deepcopy(pretrained)
for param in model.parameters():
    param.requires_grad = False            # freeze the pretrained body
num_ftrs = model[4].in_features
model[4] = nn.Linear(num_ftrs, 3)          # a new head: requires_grad=True by default
same_init(model)
model.load_state_dict({**pretrained.state_dict(), **{k: v for k, v in model.state_dict().items() if k.startswith("4.")}})
params_to_update = [p for p in model.parameters() if p.requires_grad]
optimizer = optim.AdamW(params_to_update, lr=1e-2, weight_decay=1e-2)
scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
losses = []
for epoch in range(10):
    for inputs, labels in DataLoader(TensorDataset(torch.from_numpy(X2), torch.from_numpy(Y2)), batch_size=20):
        optimizer.zero_grad()
        loss = criterion(model(inputs), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    scheduler.step()
frozen_same = all(bool((a == b).all()) for (n, a), (m, b) in zip(model.named_parameters(), pretrained.named_parameters())
                  if not n.startswith("4."))
n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
RESULT = dict(losses=losses, frozen_same=frozen_same, n_trainable=n_trainable)
'''


def test_transfer_script_freezes_the_body_swaps_the_head_and_finetunes_with_adamw():
    x, y = _data(256, 784, 10, seed=6)
    x2, y2 = _data(60, 784, 3, seed=7)
    got, ref = _both(TRANSFER, X=x, Y=y, X2=x2, Y2=y2)
    assert got["frozen_same"] and got["n_trainable"] == 64 * 3 + 3
    assert np.mean(got["losses"][-3:]) < np.mean(got["losses"][:3])
    if ref is not None:
        np.testing.assert_allclose(got["losses"], ref["losses"], rtol=1e-4, atol=1e-5)
