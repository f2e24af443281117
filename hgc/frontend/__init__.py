"""The HugeCTR Python API surface (3.x training API, the 2.3 Session API, the inference API)."""
from __future__ import annotations

from hgc.frontend.enums import (
    Activation_t,
    Alignment_t,
    AllReduceAlgo,
    Check_t,
    CommunicationType,
    DatabaseHashMapAlgorithm_t,
    DatabaseOverflowPolicy_t,
    DatabaseType_t,
    DataReaderType_t,
    DataSourceType_t,
    DeviceLayout,
    Distribution_t,
    ElementWiseMultiply,
    Embedding_t,
    FcPosition_t,
    GroupLayer_t,
    HybridEmbeddingType,
    Initializer_t,
    Layer_t,
    LrPolicy_t,
    MetricsType,
    Optimizer_t,
    PowerLaw_t,
    Regularizer_t,
    Tensor_t,
    TrainPSType_t,
    Update_t,
    UpdateSourceType_t,
)
from hgc.frontend.inference import (
    InferenceModel,
    InferenceParams,
    PersistentDatabaseParams,
    UpdateSourceParams,
    VolatileDatabaseParams,
)
from hgc.frontend.layers import DenseLayer, DenseLayerComputeConfig, GroupDenseLayer, Input, SparseEmbedding
from hgc.frontend.low_level import (
    DataReader,
    DataReader32,
    DataReader64,
    EmbeddingTraingCache,
    EmbeddingTrainingCache,
    LearningRateScheduler,
    ModelOversubscriber,
    ModelPrefetcher,
)
from hgc.frontend.model import Model
from hgc.frontend.optimizer import CreateOptimizer, OptParamsPy
from hgc.frontend.reader_params import DataReaderParams, DataReaderSparseParam
from hgc.frontend.session import Session, SolverParser, get_learning_rate_scheduler, solver_parser_helper
from hgc.frontend.solver import (
    AsyncParam,
    CreateETC,
    CreateSolver,
    EmbeddingTrainingCacheParams,
    HybridEmbeddingParam,
    Solver,
)

__all__ = [
    "Activation_t", "Alignment_t", "AllReduceAlgo", "AsyncParam", "Check_t", "CommunicationType", "CreateETC",
    "CreateOptimizer", "CreateSolver", "DataReader", "DataReader32", "DataReader64", "DataReaderParams",
    "DataReaderSparseParam", "DataReaderType_t", "DataSourceType_t", "DatabaseHashMapAlgorithm_t",
    "DatabaseOverflowPolicy_t", "DatabaseType_t", "DenseLayer", "DenseLayerComputeConfig", "DeviceLayout",
    "Distribution_t", "ElementWiseMultiply", "EmbeddingTraingCache", "EmbeddingTrainingCache",
    "EmbeddingTrainingCacheParams", "Embedding_t", "FcPosition_t", "GroupDenseLayer", "GroupLayer_t",
    "HybridEmbeddingParam", "HybridEmbeddingType", "InferenceModel", "InferenceParams", "Initializer_t",
    "Input", "Layer_t", "LearningRateScheduler", "LrPolicy_t", "MetricsType", "Model", "ModelOversubscriber",
    "ModelPrefetcher", "OptParamsPy", "Optimizer_t", "PersistentDatabaseParams", "PowerLaw_t", "Regularizer_t",
    "Session", "Solver", "SolverParser", "SparseEmbedding", "Tensor_t", "TrainPSType_t", "UpdateSourceParams",
    "UpdateSourceType_t", "Update_t", "VolatileDatabaseParams", "get_learning_rate_scheduler",
    "solver_parser_helper",
]
