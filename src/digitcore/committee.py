"""A committee: several networks read the same input, their averaged probabilities answer.

Ciresan et al. (2010, 2012) averaged the outputs of independently trained MLPs; networks
trained from different seeds (and, with augmentation, on differently deformed digits) make
partly different mistakes, so the mean of their class probabilities is usually right more
often than any one of them (not always: a committee of weak members can trail its best). :class:`Committee` holds the member :class:`~digitcore.network.Network`
objects and answers like a Network (``predict_proba``, ``predict``, ``logits``,
``evaluate``, ``score``, ``predict_image``, ``save``); ``digitcore.load_model`` reads a
committee file back (format: :mod:`digitcore._modelfile`).
"""

from __future__ import annotations

import numpy as np

from digitcore._checks import all_finite
from digitcore._modelfile import write_committee
from digitcore.augment import check_tta, log_mean_exp, mean_proba, tta_answers, tta_mean_proba
from digitcore.network import (Network, check_pixel_floats, check_pixel_images, log_softmax,
                               trained_on_pixels)

__all__ = ["Committee"]

# training_summary entries besides "input" by which a member refuses what it would
# misread (network.check_pixel_images); a saved committee keeps them in its members'
# entries
MEMBER_CHECKS = ("background", "float_max")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Committee:
    """Networks whose mean class probability is the prediction.

    Parameters
    ----------
    members : sequence of Network
        At least one network; all take the same number of features and give the same
        number of classes. Kept in this order: probabilities are summed in it.

    Notes
    -----
    ``predict_proba`` sums the members' float32 probabilities in float64, in member order,
    divides by the member count and rounds once to float32, so the answer does not depend
    on the thread count (each member's does not) nor on anything but the members and their
    order.

    Examples
    --------
    >>> a, b = Network([4, 8, 3], seed=0), Network([4, 8, 3], seed=1)
    >>> c = Committee([a, b])
    >>> len(c), c.n_classes
    (2, 3)
    """

    def __init__(self, members):
        try:
            members = list(members)
        except TypeError:
            raise TypeError(f"members must be a sequence of Network, got "
                            f"{type(members).__name__}") from None
        if not members:
            raise ValueError("a committee needs at least one network")
        for i, net in enumerate(members):
            if not isinstance(net, Network):
                raise TypeError(f"members[{i}] is a {type(net).__name__}, expected a "
                                "digitcore.Network")
            if (net.n_features, net.n_classes) != (members[0].n_features,
                                                   members[0].n_classes):
                raise ValueError(
                    f"members[{i}] maps {net.n_features} features to {net.n_classes} "
                    f"classes, members[0] {members[0].n_features} to {members[0].n_classes}: "
                    "a committee's members must agree on both")
        self.members = members
        self.training_summary = None

    # ---- what it is ------------------------------------------------------------------------

    def __len__(self):
        return len(self.members)

    @property
    def n_features(self):
        return self.members[0].n_features

    @property
    def n_classes(self):
        return self.members[0].n_classes

    @property
    def n_params(self):
        """Parameters of all members together."""
        return sum(net.n_params for net in self.members)

    @property
    def layer_sizes(self):
        """The first member's layer sizes (members may differ in their hidden layers)."""
        return self.members[0].layer_sizes

    @property
    def activation(self):
        return self.members[0].activation

    def get_config(self):
        """``{"combine": "mean_proba", "members": [each member's get_config()]}``."""
        return {"combine": "mean_proba", "members": [net.get_config() for net in self.members]}

    def copy(self):
        """An independent copy (members copied)."""
        out = Committee([net.copy() for net in self.members])
        out.training_summary = self.training_summary
        return out

    # ---- inference -------------------------------------------------------------------------

    def predict_proba(self, x, *, tta=None):
        """Mean of the members' class probabilities.

        Parameters
        ----------
        x : array, shape (n, height, width) or (n, features), uint8 or float
        tta : None or str
            Test-time augmentation (:data:`digitcore.augment.TTA`): the mean over the
            views of each image ("shift": it and its four one-pixel shifts) of the
            committee's answer, as :meth:`Network.predict_proba` takes it.

        Returns
        -------
        ndarray, float32, shape (n, n_classes); rows sum to 1 (to float32 rounding).
        """
        if check_tta(tta) is not None:
            return tta_mean_proba(self.predict_proba, x, tta)
        self._check_input(x)
        return mean_proba(net.predict_proba(x) for net in self.members)

    def _share_record(self):
        """Give each member without a record of its own (as read from a file) the input
        record its committee keeps (``training_summary["input"]``, or the member's entry
        of ``training_summary["members"]``), and its background record (the entry's, else
        the committee's): a member used alone then refuses 0-255 floats and images on a
        light background as the committee does (network.check_pixel_floats,
        check_pixel_images)."""
        summary = self.training_summary
        if not isinstance(summary, dict):
            return
        per = summary.get("members")
        own = isinstance(per, list) and len(per) == len(self.members)
        for i, net in enumerate(self.members):
            # (a member's entry without an input record takes the committee's: save
            # writes the committee's when any member read pixels)
            record = per[i] if own and isinstance(per[i], dict) and "input" in per[i] \
                else summary
            if net.training_summary is None and isinstance(record, dict) \
                    and isinstance(record.get("input"), str):
                net.training_summary = {"input": record["input"]}
                # (the committee's background, which save writes only when every member
                # was trained on dark-background digits, when the entry has none)
                background = record.get("background", summary.get("background"))
                if background in ("dark", "light"):
                    net.training_summary["background"] = background
                if _is_number(record.get("float_max")):
                    net.training_summary["float_max"] = record["float_max"]

    def _check_input(self, x):
        """Floats that can only be 0-255 pixels refused (network.check_pixel_floats), by
        the committee's own record (a committee given a summary whose members have none;
        one read from a file shares its record with them: _share_record); so are uint8
        images a model of dark-background digits would misread (check_pixel_images)."""
        check_pixel_images(x, self.training_summary)
        try:
            x = np.asarray(x)
            if x.dtype.kind != "f" or not all_finite(x):
                return  # (the members' own checks name what is wrong with it)
        except Exception:
            return
        check_pixel_floats(x, self.training_summary)

    def _answers(self, x):
        """One forward pass of each member: (:meth:`predict_proba`'s probabilities, the same
        bits, and the log of the mean probability, float64 (n, n_classes), from the
        members' logits: finite even where every member's float32 probability underflows
        to 0)."""
        self._check_input(x)
        probas, logs = zip(*(net._answers(x) for net in self.members))
        return mean_proba(probas), log_mean_exp(np.stack(logs))

    def logits(self, x):
        """Log of the mean probabilities, float32 (n, n_classes): values whose softmax is
        :meth:`predict_proba` (to rounding), computed from the members' logits in float64
        so that they stay finite."""
        self._check_input(x)
        logs = np.stack([log_softmax(net.logits(x)) for net in self.members])
        return log_mean_exp(logs).astype(np.float32)

    def predict(self, x, *, tta=None):
        """Predicted labels, int64 (n,): the argmax of :meth:`predict_proba`."""
        return np.argmax(self.predict_proba(x, tta=tta), axis=1).astype(np.int64)

    def evaluate(self, x, y, *, tta=None):
        """(mean cross-entropy of the averaged probabilities, accuracy) on ``x`` with
        integer labels ``y``; ``tta`` as in :meth:`predict_proba`."""
        first = self.members[0]
        x2, _, _ = first.prepared_input(x)
        labels = first.prepared_labels(y, x2.shape[0])
        if x2.shape[0] == 0:
            raise ValueError("cannot evaluate on zero samples")
        # (one forward pass of each member on each view serves both figures)
        proba, logp = (self._answers(x) if check_tta(tta) is None
                       else tta_answers(self._answers, x, tta))
        loss = -float(np.mean(logp[np.arange(len(labels)), labels]))
        correct = int(np.count_nonzero(proba.argmax(axis=1) == labels))
        return loss, correct / x2.shape[0]

    def score(self, x, y, *, tta=None):
        """Accuracy (fraction of correct predictions) on ``x`` with labels ``y``; ``tta``
        as in :meth:`predict_proba`."""
        return self.evaluate(x, y, tta=tta)[1]

    # the same steps as a Network's: preprocess_image, then this committee's predict_proba
    predict_image = Network.predict_image

    # ---- files -----------------------------------------------------------------------------

    def save(self, path, metadata=None, dtype="float32"):
        """Write the committee to one safetensors file (atomically): member ``m``'s tensors
        as ``members.{m}.{2*i}.weight`` / ``.bias``, the members' configs in the metadata.
        ``metadata`` defaults to ``training_summary``. When any member was trained on
        uint8 pixels (that member misreads 0-255 floats, and so the committee, which
        refuses them), the file records it (``"input": "uint8"``) whatever the metadata
        says, as the members' own summaries are not stored: loaded, it refuses them too.
        ``digitcore.load_model(path)`` reads it back as a Committee."""
        if metadata is None:
            metadata = self.training_summary
        if metadata is not None and not isinstance(metadata, dict):
            raise ValueError(f"metadata must be a dict, got {type(metadata).__name__}")
        summaries = [net.training_summary if isinstance(net.training_summary, dict) else {}
                     for net in self.members]
        records = [summary.get("input") for summary in summaries]
        # what else a member refuses by (network.check_pixel_images): its training
        # images' background, and the largest float it was trained on
        checks = [{key: summary[key] for key in MEMBER_CHECKS if summary.get(key) is not None}
                  for summary in summaries]
        if any(isinstance(r, str) for r in records) or any(checks):
            # each member's entry says what that member read (loaded, a member used alone
            # refuses what it alone would misread): its own record, or the entry's when it
            # has none; "uint8" when either says so (a stale entry must not clear it); and
            # the member's own background and float_max
            per = (metadata or {}).get("members")
            if per is None:  # (a "members" that is something else, a count, stays as it is)
                per = [{} for _ in self.members]
            if isinstance(per, list) and len(per) == len(records):
                entries = []
                for entry, own, check in zip(per, records, checks):
                    if isinstance(entry, dict):
                        said = (entry.get("input"), own)
                        entry = dict(entry, input="uint8" if "uint8" in said
                                     else own if isinstance(own, str) else entry.get("input"),
                                     **check)
                        if entry["input"] is None:
                            del entry["input"]
                    entries.append(entry)
                metadata = dict(metadata or {}, members=entries)
        if any(trained_on_pixels(m.training_summary) for m in self.members) and (
                metadata or {}).get("input") != "uint8":
            # (what check_pixel_floats reads, and what a member without an entry of its
            # own takes when loaded: see _share_record)
            metadata = dict(metadata or {}, input="uint8")
        if {summary.get("background") for summary in summaries} == {"dark"} \
                and "background" not in (metadata or {}):
            # every member was trained on dark-background digits: loaded, the committee
            # and its members refuse what they would misread (network.check_pixel_images)
            metadata = dict(metadata or {}, background="dark")
        write_committee(path, [(net.get_config(), net.weights, net.biases)
                               for net in self.members], metadata, dtype=dtype)

    def to_onnx(self, path, input_dtype="float32"):
        """Write the committee as one ONNX model (needs the ``onnx`` package), atomically:
        every member's graph on the same input, their Softmax outputs averaged (Mean), so
        its ``probabilities`` are what :meth:`predict_proba` returns. See
        :mod:`digitcore.onnxio` and :meth:`Network.to_onnx`."""
        from digitcore.onnxio import to_onnx  # lazy: it imports onnx

        return to_onnx(self, path, input_dtype=input_dtype)

    def __repr__(self):
        archs = ["-".join(str(s) for s in net.layer_sizes) for net in self.members]
        shown = f"{len(archs)} x {archs[0]}" if len(set(archs)) == 1 else ", ".join(archs)
        return f"Committee({shown}, params={self.n_params:,})"
