"""HugeCTR's enumerations, as Python ``Enum`` classes.

Every member's value is its canonical name, and graph attributes store ``member.name``. Where HugeCTR's
documents spell one value two ways, the second spelling is an alias of the same member (``Optimizer_t.Adagrad
is Optimizer_t.AdaGrad``, ``Layer_t.ElementWiseMultiply is Layer_t.ElementwiseMultiply``), so ``.name`` is
always the canonical spelling.
"""
from __future__ import annotations

from enum import Enum
from typing import Any, TypeVar

E = TypeVar("E", bound="HugeCTREnum")


class HugeCTREnum(Enum):
    """Base of every hgc enum: prints as ``Type.member`` like HugeCTR's bindings."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.name}"

    __str__ = __repr__

    @classmethod
    def choices(cls) -> list[str]:
        """Every accepted spelling, canonical names first."""
        return list(cls.__members__)


class Layer_t(HugeCTREnum):
    """Dense layer and loss types of ``DenseLayer``."""

    Add = "Add"
    BatchNorm = "BatchNorm"
    BinaryCrossEntropyLoss = "BinaryCrossEntropyLoss"
    Cast = "Cast"
    Concat = "Concat"
    CrossEntropyLoss = "CrossEntropyLoss"
    Dropout = "Dropout"
    ELU = "ELU"
    ElementwiseMultiply = "ElementwiseMultiply"
    FmOrder2 = "FmOrder2"
    FusedInnerProduct = "FusedInnerProduct"
    FusedReshapeConcat = "FusedReshapeConcat"
    FusedReshapeConcatGeneral = "FusedReshapeConcatGeneral"
    GRU = "GRU"
    Gather = "Gather"
    GroupFusedInnerProduct = "GroupFusedInnerProduct"
    InnerProduct = "InnerProduct"
    Interaction = "Interaction"
    LayerNorm = "LayerNorm"
    MatrixMultiply = "MatrixMultiply"
    MultiCross = "MultiCross"
    MultiCrossEntropyLoss = "MultiCrossEntropyLoss"
    PReLU_Dice = "PReLU_Dice"
    ReLU = "ReLU"
    ReduceMean = "ReduceMean"
    ReduceSum = "ReduceSum"
    Reshape = "Reshape"
    Scale = "Scale"
    Select = "Select"
    SequenceMask = "SequenceMask"
    Sigmoid = "Sigmoid"
    Slice = "Slice"
    Softmax = "Softmax"
    Sub = "Sub"
    WeightMultiply = "WeightMultiply"
    ElementWiseMultiply = "ElementwiseMultiply"  # the 3.x API text's spelling


#: Layer_t members that are losses (they take [prediction, label]).
LOSS_LAYERS = ("BinaryCrossEntropyLoss", "CrossEntropyLoss", "MultiCrossEntropyLoss")


class Embedding_t(HugeCTREnum):
    DistributedSlotSparseEmbeddingHash = "DistributedSlotSparseEmbeddingHash"
    LocalizedSlotSparseEmbeddingHash = "LocalizedSlotSparseEmbeddingHash"
    LocalizedSlotSparseEmbeddingOneHot = "LocalizedSlotSparseEmbeddingOneHot"
    HybridSparseEmbedding = "HybridSparseEmbedding"


class GroupLayer_t(HugeCTREnum):
    GroupFusedInnerProduct = "GroupFusedInnerProduct"


class Optimizer_t(HugeCTREnum):
    Adam = "Adam"
    AdaGrad = "AdaGrad"
    MomentumSGD = "MomentumSGD"
    Nesterov = "Nesterov"
    SGD = "SGD"
    Ftrl = "Ftrl"
    RMSProp = "RMSProp"
    Adagrad = "AdaGrad"  # the 3.x API text's spelling


class Update_t(HugeCTREnum):
    Local = "Local"
    Global = "Global"
    LazyGlobal = "LazyGlobal"


class DataReaderType_t(HugeCTREnum):
    Norm = "Norm"
    Raw = "Raw"
    Parquet = "Parquet"
    RawAsync = "RawAsync"


class Check_t(HugeCTREnum):
    Sum = "Sum"
    Non = "Non"


class Initializer_t(HugeCTREnum):
    Default = "Default"
    Uniform = "Uniform"
    XavierNorm = "XavierNorm"
    XavierUniform = "XavierUniform"
    Zero = "Zero"


class MetricsType(HugeCTREnum):
    """Evaluation metrics of ``metrics_spec``, in HugeCTR's order (the order fit() prints them)."""

    AUC = "AUC"
    AverageLoss = "AverageLoss"
    HitRate = "HitRate"
    NDCG = "NDCG"
    SMAPE = "SMAPE"


class LrPolicy_t(HugeCTREnum):
    fixed = "fixed"


class Regularizer_t(HugeCTREnum):
    L1 = "L1"
    L2 = "L2"


class FcPosition_t(HugeCTREnum):
    Non = "Non"
    Head = "Head"
    Body = "Body"
    Tail = "Tail"
    Isolated = "Isolated"


class Activation_t(HugeCTREnum):
    Relu = "Relu"
    Non = "Non"


class DeviceLayout(HugeCTREnum):
    LocalFirst = "LocalFirst"
    NODE_FIRST = "NODE_FIRST"


class AllReduceAlgo(HugeCTREnum):
    OneShot = "OneShot"
    NCCL = "NCCL"


class CommunicationType(HugeCTREnum):
    IB_NVLink_Hier = "IB_NVLink_Hier"
    IB_NVLink = "IB_NVLink"
    NVLink_SingleNode = "NVLink_SingleNode"


class HybridEmbeddingType(HugeCTREnum):
    Distributed = "Distributed"


class TrainPSType_t(HugeCTREnum):
    """Parameter-server kinds of the embedding training cache."""

    Staged = "Staged"
    Cached = "Cached"


class Alignment_t(HugeCTREnum):
    Auto = "Auto"
    Non = "Non"


class Distribution_t(HugeCTREnum):
    PowerLaw = "PowerLaw"
    Uniform = "Uniform"


class PowerLaw_t(HugeCTREnum):
    Long = "Long"
    Medium = "Medium"
    Short = "Short"
    Specific = "Specific"


class DatabaseType_t(HugeCTREnum):
    """Backends of the inference parameter server's volatile and persistent databases."""

    disabled = "disabled"
    hash_map = "hash_map"
    parallel_hash_map = "parallel_hash_map"
    multi_process_hash_map = "multi_process_hash_map"
    redis_cluster = "redis_cluster"
    rocks_db = "rocks_db"


class DatabaseHashMapAlgorithm_t(HugeCTREnum):
    """Hash-map implementation of the CPU-memory databases: the standard library's or a parallel one."""

    STL = "STL"
    PHM = "PHM"
    stl = "STL"
    phm = "PHM"


class DatabaseOverflowPolicy_t(HugeCTREnum):
    evict_oldest = "evict_oldest"
    evict_random = "evict_random"
    evict_least_used = "evict_least_used"


class UpdateSourceType_t(HugeCTREnum):
    null = "null"
    kafka_message_queue = "kafka_message_queue"
    Null = "null"


class DataSourceType_t(HugeCTREnum):
    """File systems a data source may live on."""

    Local = "Local"
    HDFS = "HDFS"
    S3 = "S3"
    GCS = "GCS"
    Other = "Other"


class Tensor_t(HugeCTREnum):
    """Which network ``Model.check_out_tensor`` reads: training (gradients) or evaluation."""

    Train = "Train"
    Evaluate = "Evaluate"


#: Every enum class, by name (what hgc exports at top level).
ALL_ENUMS: dict[str, type[HugeCTREnum]] = {
    c.__name__: c for c in (
        Layer_t, Embedding_t, GroupLayer_t, Optimizer_t, Update_t, DataReaderType_t, Check_t, Initializer_t,
        MetricsType, LrPolicy_t, Regularizer_t, FcPosition_t, Activation_t, DeviceLayout, AllReduceAlgo,
        CommunicationType, HybridEmbeddingType, TrainPSType_t, Alignment_t, Distribution_t, PowerLaw_t,
        DatabaseType_t, DatabaseHashMapAlgorithm_t, DatabaseOverflowPolicy_t, UpdateSourceType_t,
        DataSourceType_t, Tensor_t)
}

#: ``hugectr.ElementWiseMultiply``: the 3.x API text names the layer type at top level.
ElementWiseMultiply = Layer_t.ElementwiseMultiply


def to_enum(cls: type[E], value: Any, arg: str, where: str) -> E:
    """``value`` as a member of ``cls``: a member, or the name (any listed spelling) of one.

    Anything else is a ValueError naming the argument, the value and the allowed members.
    """
    if isinstance(value, cls):
        return value
    if isinstance(value, str) and value in cls.__members__:
        return cls.__members__[value]
    allowed = ", ".join(f"{cls.__name__}.{n}" for n in cls.__members__)
    raise ValueError(f"{where}: argument '{arg}' = {value!r} is not allowed: must be one of {allowed}")
