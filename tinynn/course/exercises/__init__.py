"""Exercise checks: the cell after each exercise in the course calls one of these.

    from tinynn.course.exercises import check_layer
    check_layer(MyDense, tn.Dense)   # prints "✔ ..." or "✘ <what is wrong>", returns True/False

Each check runs your implementation next to tinynn's reference on a few small float64 inputs and
says in plain words what is wrong, showing the first numbers that differ. A check never raises:
an exercise that is not done yet reports "not yet implemented", and the notebook carries on with
the reference version. Everything is seeded, so a check prints the same words every time it runs.

    check_layer(MyDense, tn.Dense)            # a Layer class or instance vs. the reference class
    check_loss(MySoftmaxCE, tn.SoftmaxCrossEntropy)
    check_optimizer(MyMomentum, tn.Momentum, lr=0.1, momentum=0.9)   # both built with the kwargs
    check_function(my_softmax, softmax, logits)   # plain functions (or schedules) on example args
    check_epoch_accuracy(epoch_accuracy)      # (batch accuracies, batch sizes) -> the epoch's
    check_model_step(train_step)              # train_step(net, loss, optimizer, x, y) -> loss
    check_skip_backward(skip_backward)        # dL/dx for y = x + block(x)
    check_op(my_add, autograd.add)            # an autograd operation: forward, backward, gradcheck
    check_pick(my_pick, autograd.pick)        # a[index], elements picked twice included
    check_topological_order(my_topological_order)
    check_col2im(my_col2im)                   # my_col2im(dcols, x_shape, k, stride, dilation)
    check_dropout(MyDropout)                  # a dropout layer: random, so checked by its rules
    check_confusion_matrix(my_confusion_matrix)   # (logits, labels, n_classes) -> counts
    check_precision_recall(my_precision_recall)   # counts -> (precision, recall)
    check_batch_dependency(my_batch_dependency, tn.batch_dependency)   # d(row i's sum)/d(batch)

``expect`` checks what an experiment teaches, for results no two machines print digit for digit
(anything trained): ``expect("test accuracy is at least 97.5%", accuracy >= 0.975, f"{accuracy:.2%}")``.

The package: ``core`` (the runner, verdicts, hints), ``compare`` (arrays compared, differences
named), ``spec`` (the ``Exercise`` spec and the registry of all of them) and one module per
notebook (``n01_dense``, ...) with that notebook's checks, catalogues of mistakes and specs.
"""
from .core import expect
from .n00_overview import check_epoch_accuracy, check_function
from .n01_dense import check_layer
from .n03_losses import check_loss
from .n04_optimizers import check_optimizer
from .n05_net_and_model import check_model_step, check_skip_backward
from .n06_mnist_mlp import check_confusion_matrix, check_he_init, check_precision_recall
from .n07_learning_rate_lab import check_lr_range_test
from .n08_generalisation import check_dropout
from .n09_convolutions import check_col2im
from .n11_autograd import check_op, check_pick, check_topological_order
from .n12_debugging import (check_batch_dependency, check_dead_fraction, check_inference,
                            check_scaling, check_shuffle)
from .n13_language_models import check_bigram_optimum, check_embedding_backward
from .n14_attention import (check_attention_backward, check_causal_softmax,
                            check_layer_norm_backward)
from .spec import registry

__all__ = ["check_layer", "check_loss", "check_optimizer", "check_function", "check_epoch_accuracy",
           "check_model_step",
           "check_skip_backward",
           "check_op", "check_pick", "check_topological_order", "check_col2im",
           "check_shuffle", "check_scaling", "check_dead_fraction", "check_inference",
           "check_batch_dependency",
           "check_dropout", "check_he_init", "check_confusion_matrix", "check_precision_recall",
           "check_lr_range_test", "check_causal_softmax", "check_attention_backward",
           "check_layer_norm_backward", "check_bigram_optimum", "check_embedding_backward",
           "expect", "registry"]
