"""Every example of the seed (../shared/seed/000_019df605e9621e1f.txt, a tensorboardX how-to in
Chinese), in its order, run against our SummaryWriter by tests/test_seed.py (with `runpy`, in an
empty working directory: the seed logs to the relative `logs/my_experiment`).

The seed's code is kept as written (its formatting too), except:
- its import, `from torch.utils.tensorboard import SummaryWriter`, is switched to ours: the one
  change that is not a fix;
- where its own code is broken, each change is commented `# seed fix:` with what was wrong;
- the helpers and values it uses but never defines (data_loader, accuracy, roc_curve, ...) are
  defined minimally in the first section, or just before the example that needs them, each
  marked `# seed helper:`.

The seed closes its writer at the end of example 3 and keeps using it: the writer reopens, as
tensorboardX's and torch's do.
"""

# The seed's own code, type-checked only by running it.
# mypy: ignore-errors
# fmt: off

import numpy as np
import torch
import torch.nn as nn

# -- seed helper: what the examples use but the seed never defines -------------------------------

torch.manual_seed(0)  # seed helper: the model's initial weights, and so every value logged, repeat
_generator = torch.Generator().manual_seed(0)
_rng = np.random.default_rng(0)

# seed helper: two batches of 8 samples of 10 features, binary targets (as BCELoss takes them).
data_loader = [
    (torch.randn(8, 10, generator=_generator), torch.randint(0, 2, (8, 1), generator=_generator).float())
    for _ in range(2)
]
accuracy = 0.75  # seed helper: example 3 logs `accuracy` without computing it
log_message = "epoch 99: loss and accuracy logged"  # seed helper (example 9)
train_performance, val_performance = 0.9, 0.8  # seed helper (example 12)
pred_image = _rng.random((3, 16, 16))  # seed helper (example 13): an image, CHW in [0, 1]
performance = 0.85  # seed helper (example 17)


def confusion_matrix_str():  # seed helper (example 14)
    return "| | pred 0 | pred 1 |\n|---|---|---|\n| true 0 | 40 | 10 |\n| true 1 | 5 | 45 |"


def calculate_feature_importance():  # seed helper (example 15): one value per input feature
    return model[0].weight.detach().abs().sum(dim=0).numpy()


def model_visualization_embeddings():  # seed helper (example 16): the hidden layer's output per sample
    with torch.no_grad():
        return model[1](model[0](torch.cat([batch for batch, _ in data_loader])))


labels = [f"sample {i}" for i in range(16)]  # seed helper (example 16): one label per embedding row


def calculate_sensitivity():  # seed helper (example 18)
    return _rng.random(100)


class DecisionPath(nn.Module):  # seed helper (example 19): the model's path to its hidden layer
    def __init__(self, model):
        super().__init__()
        self.hidden = model[0]

    def forward(self, x):
        return (self.hidden(x) > 0).float()


def model_decision_path():  # seed helper (example 19)
    return DecisionPath(model)


def model_attention_map():  # seed helper (example 20): a one-channel map, CHW in [0, 1]
    attention = _rng.random((1, 8, 8))
    return attention / attention.sum()


def calculate_robustness():  # seed helper (example 21)
    return _rng.normal(0.8, 0.05, 100)


def model_explanation():  # seed helper (example 22)
    return "Feature 3 drives the prediction."


def model_predictions_distribution():  # seed helper (example 23)
    with torch.no_grad():
        return model(torch.randn(64, 10, generator=_generator)).numpy()


X, y = _rng.normal(size=(30, 10)), _rng.integers(0, 2, 30)  # seed helper (example 24)


def cross_validate(model, X, y):  # seed helper (example 24): a score per fold, as a dict for add_scalars
    return {f"fold{i}": float(0.7 + 0.05 * i) for i in range(3)}


y_true = np.array([0, 0, 1, 1, 0, 1, 0, 1, 1, 0])  # seed helper (examples 25 and 26)
y_scores = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.6, 0.7, 0.55, 0.3])
y_pred = (y_scores >= 0.5).astype(int)


def roc_curve(y_true, y_scores):  # seed helper (example 25): sklearn.metrics.roc_curve's result
    order = np.argsort(-y_scores, kind="stable")
    positives = np.cumsum(y_true[order] == 1)
    negatives = np.cumsum(y_true[order] == 0)
    fpr = np.concatenate([[0.0], negatives / negatives[-1]])
    tpr = np.concatenate([[0.0], positives / positives[-1]])
    thresholds = np.concatenate([[np.inf], y_scores[order]])
    return fpr, tpr, thresholds


roc_auc = float(np.trapezoid(roc_curve(y_true, y_scores)[1], roc_curve(y_true, y_scores)[0]))  # seed helper


def plot_confusion_matrix(y_true, y_pred):  # seed helper (example 26): a heatmap image, CHW in [0, 1]
    matrix = np.zeros((2, 2))
    for truth, guess in zip(y_true, y_pred):
        matrix[truth, guess] += 1
    return np.kron(matrix / matrix.max(), np.ones((8, 8)))[None]


def ensemble_model_performance():  # seed helper (example 28): a score per member of the ensemble
    return {"tree": 0.81, "linear": 0.78, "mlp": 0.86}


def contrastive_learning_matching_scores():  # seed helper (example 29): (positive, negative)
    return (0.92, 0.12)


# -- 3. 如何使用TensorboardX可视化模型训练过程？ ----------------------------------------------------

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.optim as optim  # noqa: E402

from logger_client import SummaryWriter  # noqa: E402  # the seed: from torch.utils.tensorboard import SummaryWriter

# 定义模型
# seed fix: nn.BCELoss takes probabilities, but the seed's model ends with a Linear layer: once its
# outputs leave [0, 1] as it trains (here in epoch 29), BCELoss raises RuntimeError ("all elements
# of input should be between 0 and 1"). A Sigmoid is appended.
model = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 1), nn.Sigmoid())
criterion = nn.BCELoss()
optimizer = optim.Adam(model.parameters(), lr=0.001)

# 创建SummaryWriter实例
writer = SummaryWriter('logs/my_experiment')

# 训练模型
for epoch in range(100):
    for inputs, targets in data_loader:
        optimizer.zero_grad()
        outputs = model(inputs)
        loss = criterion(outputs, targets)
        loss.backward()
        optimizer.step()

    # 记录训练过程中的指标
    writer.add_scalar('Loss/train', loss.item(), epoch)
    writer.add_scalar('Accuracy/train', accuracy, epoch)

# 关闭SummaryWriter
writer.close()

# -- 4. 如何在Tensorboard中可视化模型的参数？ -------------------------------------------------------

# 记录模型的参数分布
for name, param in model.named_parameters():
    writer.add_histogram(name, param, epoch)

# -- 5. 如何在Tensorboard中可视化模型的激活值？ -----------------------------------------------------

# 记录模型的激活值
with torch.no_grad():
    activation = model(torch.randn(1, 10)).detach().numpy()
writer.add_tensor('Activation', activation, epoch)

# -- 6. 如何在Tensorboard中可视化模型的损失函数？ ---------------------------------------------------

# 记录损失函数值
writer.add_scalar('Loss/train', loss.item(), epoch)

# -- 7. 如何在Tensorboard中可视化模型的准确率？ -----------------------------------------------------

# 记录准确率
writer.add_scalar('Accuracy/train', accuracy, epoch)

# -- 8. 如何在Tensorboard中可视化学习率？ -----------------------------------------------------------

# 记录学习率
writer.add_scalar('Learning Rate', optimizer.param_groups[0]['lr'], epoch)

# -- 9. 如何在Tensorboard中保存和加载日志文件？ -----------------------------------------------------

# 保存日志
writer.add_text('Log', log_message, epoch)

# 加载日志
writer.load('logs/my_experiment')

# -- 10. 如何在Tensorboard中可视化模型的结构？ ------------------------------------------------------

# 记录模型的图
writer.add_graph(model, inputs)

# -- 11. 如何在Tensorboard中可视化数据分布？ --------------------------------------------------------

# 记录数据的分布
writer.add_histogram('Input Data', inputs.numpy(), epoch)

# -- 12. 如何在Tensorboard中可视化训练和验证集的性能？ ----------------------------------------------

# 记录训练集和验证集的性能
writer.add_scalars('Performance', {'train': train_performance, 'val': val_performance}, epoch)

# -- 13. 如何在Tensorboard中可视化模型的预测结果？ --------------------------------------------------

# 记录预测结果
writer.add_image('Predictions', pred_image, epoch)

# -- 14. 如何在Tensorboard中可视化模型的混淆矩阵？ --------------------------------------------------

# 记录混淆矩阵
conf_matrix_str = confusion_matrix_str()
writer.add_text('Confusion Matrix', conf_matrix_str, epoch)

# -- 15. 如何在Tensorboard中可视化模型的特征重要性？ ------------------------------------------------

# 记录特征重要性
feature_importance = calculate_feature_importance()
writer.add_histogram('Feature Importance', feature_importance, epoch)

# -- 16. 如何在Tensorboard中可视化模型的可视化嵌入？ ------------------------------------------------

# 记录可视化嵌入
embeddings = model_visualization_embeddings()
# seed fix: the seed's `writer.add_embedding(embeddings, metadata=labels, label_text=labels, epoch)`
# is a SyntaxError (a positional argument after keyword arguments), and add_embedding has no
# `label_text` parameter (`metadata` already labels each point): epoch is passed as global_step.
writer.add_embedding(embeddings, metadata=labels, global_step=epoch)

# -- 17. 如何在Tensorboard中可视化模型的性能指标与学习率关系？ --------------------------------------

# 记录学习率和性能指标
writer.add_scalars('Learning Rate vs Performance', {'lr': optimizer.param_groups[0]['lr'], 'performance': performance}, epoch)  # noqa: E501

# -- 18. 如何在Tensorboard中可视化模型的敏感度？ ----------------------------------------------------

# 记录敏感度
sensitivity_values = calculate_sensitivity()
writer.add_histogram('Sensitivity', sensitivity_values, epoch)

# -- 19. 如何在Tensorboard中可视化模型的决策路径？ --------------------------------------------------

# 记录决策路径
decision_path = model_decision_path()
writer.add_graph(decision_path, inputs)

# -- 20. 如何在Tensorboard中可视化模型的注意力分布？ ------------------------------------------------

# 记录注意力分布
attention_map = model_attention_map()
writer.add_image('Attention Map', attention_map, epoch)

# -- 21. 如何在Tensorboard中可视化模型的鲁棒性？ ----------------------------------------------------

# 记录鲁棒性
robustness_scores = calculate_robustness()
writer.add_histogram('Robustness', robustness_scores, epoch)

# -- 22. 如何在Tensorboard中可视化模型的解释性？ ----------------------------------------------------

# 记录解释性
explanation_text = model_explanation()
writer.add_text('Explanation', explanation_text, epoch)

# -- 23. 如何在Tensorboard中可视化模型的预测分布？ --------------------------------------------------

# 记录预测分布
predictions_distribution = model_predictions_distribution()
writer.add_histogram('Prediction Distribution', predictions_distribution, epoch)

# -- 24. 如何在Tensorboard中可视化模型的交叉验证结果？ ----------------------------------------------

# 记录交叉验证结果
cv_scores = cross_validate(model, X, y)
writer.add_scalars('Cross Validation', cv_scores, epoch)

# -- 25. 如何在Tensorboard中可视化模型的ROC曲线？ ---------------------------------------------------

# 记录ROC曲线数据
fpr, tpr, _ = roc_curve(y_true, y_scores)
# seed fix: the seed's `writer.add_curve('ROC Curve', fpr, tpr, label='ROC curve (area = %0.2f)' % roc_auc, epoch)`
# is a SyntaxError (a positional argument after a keyword argument): epoch goes before label, as
# add_curve(tag, x, y, global_step, label=...) takes it.
writer.add_curve('ROC Curve', fpr, tpr, epoch, label='ROC curve (area = %0.2f)' % roc_auc)  # noqa: UP031

# -- 26. 如何在Tensorboard中可视化模型的混淆矩阵热力图？ --------------------------------------------

# 记录混淆矩阵的热力图
confusion_matrix_heatmap = plot_confusion_matrix(y_true, y_pred)
writer.add_image('Confusion Matrix Heatmap', confusion_matrix_heatmap, epoch)

# -- 27. 如何在Tensorboard中可视化模型的L1/L2正则化效果？ -------------------------------------------

# seed helper: the seed calls model.l1_regularization() and model.l2_regularization(), which an
# nn.Sequential does not have: the sums of the parameters' absolute values and squares.
model.l1_regularization = lambda: sum(p.abs().sum() for p in model.parameters()).item()
model.l2_regularization = lambda: sum(p.pow(2).sum() for p in model.parameters()).item()

# 记录L1/L2正则化项
l1_regularization = model.l1_regularization()
l2_regularization = model.l2_regularization()
writer.add_scalars('Regularization', {'L1': l1_regularization, 'L2': l2_regularization}, epoch)

# -- 28. 如何在Tensorboard中可视化模型的集成学习效果？ ----------------------------------------------

# 记录集成学习效果
ensemble_scores = ensemble_model_performance()
writer.add_scalars('Ensemble Performance', ensemble_scores, epoch)

# -- 29. 如何在Tensorboard中可视化模型的对比学习效果？ ----------------------------------------------

# 记录对比学习效果
contrastive_matching_scores = contrastive_learning_matching_scores()
writer.add_scalars('Contrastive Learning', {'Positive': contrastive_matching_scores[0], 'Negative': contrastive_matching_scores[1]}, epoch)  # noqa: E501

# -- 30. 如何在Tensorboard中可视化模型的可解释性？ --------------------------------------------------

# seed helper: the seed calls model.explanation(), which an nn.Sequential does not have.
model.explanation = lambda: "The hidden layer's unit 3 separates the classes."

# 记录可解释性
explanation = model.explanation()
writer.add_text('Explanation', explanation, epoch)
