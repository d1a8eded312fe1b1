"""Command line: ``python -m tinynn train | data | student``. Run with ``--help`` for details."""
import argparse
import sys
import time

import numpy as np

import tinynn as tn
from tinynn.checks import check_int, check_number
from tinynn.models import build_cnn, build_gpt, build_mlp


MODELS = {"mlp": (build_mlp, (784,), 5), "cnn": (build_cnn, (28, 28, 1), 3)}
GPT = {"context": 16, "dim": 64, "heads": 4, "layers": 2, "steps": 4000, "lr": 3e-3,
       "batch_size": 32, "samples": 10}


class EpochReport(tn.Callback):
    """Print one line per epoch: loss, accuracy, validation numbers and time taken."""

    def on_epoch_begin(self, model, epoch):
        self.start = time.perf_counter()

    def on_epoch_end(self, model, epoch, logs):
        numbers = "  ".join(f"{k} {v:.4f}" for k, v in logs.items())
        print(f"epoch {epoch + 1}: {numbers}  ({time.perf_counter() - self.start:.1f} s)",
              flush=True)


def train(args):
    if args.model == "gpt":
        return train_gpt(args)
    build, input_shape, default_epochs = MODELS[args.model]
    epochs = default_epochs if args.epochs is None else args.epochs
    args.lr, args.batch_size = args.lr or 1e-3, args.batch_size or 128
    (x_train, y_train), (x_test, y_test) = tn.load_mnist(progress=not args.quiet)
    x_train = x_train.reshape((-1,) + input_shape)
    x_test = x_test.reshape((-1,) + input_shape)
    tn.seed(args.seed)
    model = tn.Model(build(), tn.SoftmaxCrossEntropy(), tn.optimizers.get(args.optimizer, lr=args.lr))
    print(f"training a {args.model} on {len(x_train)} MNIST digits: {epochs} epochs, batch "
          f"{args.batch_size}, {args.optimizer} lr {args.lr:g}, seed {args.seed}", flush=True)
    callbacks = [EpochReport()]
    if args.average:
        callbacks.append(tn.AverageWeights(args.average))
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=args.batch_size,
                        validation=(x_test, y_test), callbacks=callbacks, progress=not args.quiet)
    if history["stopped"]:
        print(f"training ended early: {history['stopped']}")
    elif args.average and epochs:
        print(f"weights: moving average of the last ~{1 / (1 - args.average):.0f} steps "
              f"(--average {args.average:g}; the epoch lines show the last step's weights)")
    if args.save:
        print(f"saved to {model.save(args.save)}")
    print(f"test accuracy: {100 * model.evaluate(x_test, y_test)['accuracy']:.2f}%")
    return 0


class StepReport(tn.Callback):
    """Print the mean training loss of every ``every`` steps, and the time taken."""

    def __init__(self, steps, every):
        self.steps, self.every, self.losses = steps, every, []

    def on_train_begin(self, model):
        self.start = time.perf_counter()

    def on_batch_end(self, model, step, logs):
        self.losses.append(logs["loss"])
        if step % self.every == 0 or step == self.steps:
            print(f"step {step}/{self.steps}: loss {sum(self.losses) / len(self.losses):.4f}  "
                  f"({time.perf_counter() - self.start:.1f} s)", flush=True)
            self.losses = []


def train_gpt(args):
    """Notebook 14's GPT on names: train, then held-out NLL per character and samples."""
    steps, lr = args.steps or GPT["steps"], args.lr or GPT["lr"]
    batch_size = args.batch_size or GPT["batch_size"]
    names = tn.load_names(progress=not args.quiet)
    train_names, val_names = tn.names.split(names, seed=0)
    vocab = tn.names.Vocabulary(names)
    x, y = tn.names.windows(train_names, vocab, GPT["context"], every_position=True)
    tn.seed(args.seed)
    net = build_gpt(len(vocab), GPT["context"], GPT["dim"], GPT["heads"], GPT["layers"])
    warmup = max(1, min(100, steps // 10))
    schedule = tn.WarmUp(tn.CosineDecay(lr, max(1, steps - warmup), min_lr=lr / 10), warmup)
    model = tn.Model(net, tn.SoftmaxCrossEntropy(), tn.optimizers.get(args.optimizer, lr=schedule))
    print(f"training a gpt ({GPT['layers']} blocks, width {GPT['dim']}, {GPT['heads']} heads, "
          f"context {GPT['context']}) on {len(train_names)} names: {steps} steps, batch "
          f"{batch_size}, {args.optimizer} lr {lr:g} (warm-up, cosine decay), seed {args.seed}",
          flush=True)
    callbacks = [StepReport(steps, max(1, steps // 10))]
    callbacks += [tn.AverageWeights(args.average)] if args.average else []
    history = tn.names.fit_steps(model, x, y, steps, batch_size, callbacks, seed=args.seed)
    if history["stopped"]:
        print(f"training ended early: {history['stopped']}")
    if args.save:
        print(f"saved to {model.save(args.save)}")
    x_val, y_val = tn.names.windows(val_names, vocab, GPT["context"])
    print(f"held-out NLL per character ({len(val_names)} validation names): gpt "
          f"{tn.names.held_out_nll(model, x_val, y_val):.4f}, bigram count table "
          f"{tn.names.bigram_nll(train_names, val_names, vocab):.4f}")
    # start from a full window of '.': training saw every name begin after 16 of them
    start = np.zeros((GPT["samples"], GPT["context"]), np.int64)
    ids = tn.sample(model, start, GPT["context"], stop=0)
    print("samples: " + ", ".join(vocab.decode(row[GPT["context"]:]).split(".")[0] for row in ids))
    return 0


def data(args):
    path = tn.datasets.ensure_mnist(progress=not args.quiet)
    (x_train, _), (x_test, _) = tn.load_mnist(progress=False)
    print(f"MNIST cache ok: {path} ({len(x_train)} training and {len(x_test)} test images)")
    names = tn.load_names(progress=not args.quiet)
    print(f"names ok: {path.parent / tn.datasets.NAMES_NAME} ({len(names)} names)")
    return 0


def student(args):
    from tinynn.course.classroom import write_student_notebooks
    for path in write_student_notebooks(args.source, args.out):
        print(f"wrote {path}")
    return 0


def grade(args):
    from tinynn.course.autograde import command
    return command(args)


def checked(convert, check, *bounds):
    """An argparse ``type``: the text converted by ``convert`` (int or float), then checked by
    ``check`` from tinynn.checks (e.g. ``checked(float, check_number, "(0, inf)")``), so the
    command line and the library refuse the same values with the same words."""
    def parse(text):
        try:
            return check(convert(text), "the value", "tinynn", *bounds)
        except tn.ConfigError as err:
            raise argparse.ArgumentTypeError(str(err).split(": ", 1)[1]) from None
    parse.__name__ = convert.__name__  # argparse's "invalid int value: 'x'"
    return parse


positive_int = checked(int, check_int)
non_negative_int = checked(int, check_int, 0)
positive_number = checked(float, check_number, "(0, inf)")
fraction_below_one = checked(float, check_number, "[0, 1)")


def parser():
    p = argparse.ArgumentParser(prog="python -m tinynn",
                                description="tinynn: a small deep-learning framework in numpy.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_data(sub)
    _add_student(sub)
    _add_grade(sub)
    return p


def _add_train(sub):
    t = sub.add_parser("train", help="train a network (MNIST or names) and report how it does",
                       description="mlp, cnn: train on the 60,000 MNIST training digits, evaluate "
                                   "on the 10,000 test digits; ends with 'test accuracy: "
                                   "NN.NN%%'. gpt: train notebook 14's small GPT on 90%% of "
                                   "names.txt, then print its held-out NLL per character beside "
                                   "the bigram count table's, and sampled names.")
    t.add_argument("--model", choices=sorted(MODELS) + ["gpt"], default="mlp",
                   help="mlp: 784-200-100-10 ReLU net (default); cnn: small convolutional net; "
                        "gpt: a 2-block transformer over characters (names)")
    t.add_argument("--epochs", type=non_negative_int, default=None,
                   help="mlp, cnn: passes over the training set (default: 5 for mlp, 3 for cnn)")
    t.add_argument("--steps", type=positive_int, default=None,
                   help=f"gpt: training steps (default: {GPT['steps']}, about 1 min on 2 cores)")
    t.add_argument("--batch-size", type=positive_int, default=None,
                   help=f"default: 128 (gpt: {GPT['batch_size']})")
    t.add_argument("--optimizer", choices=sorted(tn.optimizers.OPTIMIZERS), default="adam",
                   help="default: adam")
    t.add_argument("--lr", type=positive_number, default=None,
                   help=f"learning rate (default: 1e-3; gpt: {GPT['lr']:g}, after a warm-up, "
                        "then a cosine decay to a tenth of it)")
    t.add_argument("--average", type=fraction_below_one, default=0.995, metavar="DECAY",
                   help="evaluate an exponential moving average of the weights, which remembers "
                        "~1/(1-DECAY) steps (tinynn.AverageWeights); 0 turns it off "
                        "(default: 0.995)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    t.add_argument("--save", metavar="PATH", help="save the trained model to PATH (.npz)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(run=train)


def _add_data(sub):
    d = sub.add_parser("data", help="download (if needed) and verify MNIST and names",
                       description="Seed or check the dataset cache in data/ (MNIST, names.txt). "
                                   "Set TINYNN_DATA_MIRROR to a folder or URL holding "
                                   "mnist.pkl.gz (or the IDX files) and names.txt to work "
                                   "offline.")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(run=data)


def _add_student(sub):
    s = sub.add_parser("student", help="write student notebooks (solutions stripped)",
                       description="Copy every notebook in SOURCE to --out with solution blocks "
                                   "replaced by 'raise NotImplementedError()' and outputs cleared.")
    s.add_argument("source", help="folder of course notebooks, e.g. notebooks/")
    s.add_argument("--out", required=True, help="folder to write the student notebooks to")
    s.set_defaults(run=student)


def _add_grade(sub):
    g = sub.add_parser("grade", help="autograde submitted notebooks into a CSV",
                       description="Run every student's notebooks in a fresh kernel with the "
                                   "course notebooks' hidden tests (nbgrader's locked test "
                                   "cells) and write one row per student: the points of each "
                                   "exercise, read from the tests' verdicts, or why there are "
                                   "none. SUBMISSIONS holds a folder per student, with the "
                                   "notebooks in it or in nbgrader's submitted/<student>/"
                                   "<assignment>/ layout.")
    g.add_argument("submissions", metavar="SUBMISSIONS",
                   help="folder of student folders (or nbgrader's submitted/)")
    g.add_argument("--source", default="notebooks",
                   help="folder of the course notebooks with the hidden tests (default: notebooks)")
    g.add_argument("--out", default="grades.csv", help="CSV to write (default: grades.csv)")
    g.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                   help="notebooks run at once (default: the number of cores); with more than "
                        "one, each kernel gets OPENBLAS_NUM_THREADS=OMP_NUM_THREADS="
                        "MKL_NUM_THREADS=1 so BLAS threads do not oversubscribe the cores")
    g.add_argument("--timeout", type=positive_int, default=600, metavar="S",
                   help="seconds a cell may run before its notebook is stopped (default: 600)")
    g.add_argument("--feedback", metavar="DIR",
                   help="write each executed notebook, with its diagnosis, to "
                        "DIR/<student>/<notebook>.ipynb")
    g.set_defaults(run=grade)


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    if args.command == "train":
        wrong = "--epochs" if args.model == "gpt" and args.epochs is not None else \
            "--steps" if args.model != "gpt" and args.steps is not None else None
        if wrong:
            p.error(f"{wrong} does not apply to --model {args.model} (gpt trains for --steps, "
                    "mlp and cnn for --epochs)")
    try:
        return args.run(args)
    except tn.TinynnError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
