/** ONNX protobuf building and reading, shared by the exporter and the onnxruntime-genai adapter. */
export { DataType, int64ToNumber, onnx, type Int64Field } from './onnx-namespace.js';
export {
  type ExternalDataLocation,
  type TensorData,
  elementSize,
  externalDataEntries,
  float16Tensor,
  floatTensor,
  int32Tensor,
  int64Tensor,
  isExternal,
  readExternalDataLocation,
  tensorBytes,
  tensorDims,
  tensorToArray,
  uint8Tensor,
} from './tensor-proto.js';
export { type AttributeValue, type Dim, type NodeOptions, attr, makeAttribute, makeNode, readAttribute, readValueInfo, valueInfo } from './graph-nodes.js';
export {
  DEFAULT_IR_VERSION,
  DEFAULT_OPSETS,
  type GraphParts,
  type ModelOptions,
  type OpsetImport,
  type WriteModelOptions,
  type WrittenModel,
  decodeModel,
  encodeModel,
  makeModel,
  readModel,
  writeModel,
} from './model-proto.js';
export { ExternalDataWriter, type ExternalDataWriterOptions, writeAll } from './external-data-writer.js';
