// A minimal ONNX graph builder: named values, initializers, nodes and the model message.
// Why our own: libtorch's C++ API has no ONNX exporter (torch.onnx is Python), and weakseg's networks are a
// module tree walked by src/export/modules.ts; onnx-proto gives the protobuf message types and encoder.
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/** The opset the exporter writes (ONNX 1.12+, onnxruntime 1.12+). */
export const OPSET = 17;
/** IR version 8 goes with opset 17. */
const IR_VERSION = 8;

export type AttributeValue = number | number[] | string | { ints: number[] } | { floats: number[] } | { float: number };

export interface ValueInfo {
  name: string;
  /** 'float32' or 'int64'. */
  dtype: 'float32' | 'int64';
  /** Dimension sizes; strings are symbolic (dynamic) dimensions. */
  shape: (number | string)[];
}

const DTYPES = { float32: onnx.TensorProto.DataType.FLOAT, int64: onnx.TensorProto.DataType.INT64 } as const;

function attribute(name: string, value: AttributeValue): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof value === 'number') {
    return Number.isInteger(value) ? { name, type: T.INT, i: value } : { name, type: T.FLOAT, f: value };
  }
  if (typeof value === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: T.INTS, ints: value };
  if ('ints' in value) return { name, type: T.INTS, ints: value.ints };
  if ('floats' in value) return { name, type: T.FLOATS, floats: value.floats };
  return { name, type: T.FLOAT, f: value.float };
}

function valueInfo(v: ValueInfo): onnxProto.onnx.IValueInfoProto {
  return {
    name: v.name,
    type: {
      tensorType: {
        elemType: DTYPES[v.dtype],
        shape: { dim: v.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

/** Builds one graph: every node output gets a fresh name; initializers hold the weights (raw little-endian data). */
export class GraphBuilder {
  readonly #nodes: onnxProto.onnx.INodeProto[] = [];
  readonly #initializers: onnxProto.onnx.ITensorProto[] = [];
  readonly #names = new Set<string>();
  #counter = 0;

  /** `reserved`: the graph's input and output names, which no intermediate value may take. */
  constructor(reserved: readonly string[] = []) {
    for (const n of reserved) this.#names.add(n);
  }

  /** A fresh value name from a readable stem ("features.3.conv.0" -> "features.3.conv.0_7"). */
  fresh(stem: string): string {
    let name = stem;
    while (this.#names.has(name)) name = `${stem}_${++this.#counter}`;
    this.#names.add(name);
    return name;
  }

  /** A float32 constant tensor (weights, statistics) under `name`. */
  initializer(name: string, shape: readonly number[], data: Float32Array): string {
    const n = this.fresh(name);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    this.#initializers.push({ name: n, dims: [...shape], dataType: DTYPES.float32, rawData: bytes.slice() });
    return n;
  }

  /** An int64 constant (shapes, pads, axes). */
  int64(name: string, values: readonly number[], shape: readonly number[] = [values.length]): string {
    const n = this.fresh(name);
    const data = new BigInt64Array(values.map((v) => BigInt(v)));
    this.#initializers.push({ name: n, dims: [...shape], dataType: DTYPES.int64, rawData: new Uint8Array(data.buffer) });
    return n;
  }

  /** Adds a node; returns its output names (one per `outputs` stem). */
  node(opType: string, inputs: readonly string[], attrs: Record<string, AttributeValue> = {}, outputs: readonly string[] = [opType]): string[] {
    const outs = outputs.map((o) => this.fresh(o));
    this.#nodes.push({
      opType, input: [...inputs], output: outs, name: this.fresh(`${opType}_node`),
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outs;
  }

  /** One-output node. */
  op(opType: string, inputs: readonly string[], attrs: Record<string, AttributeValue> = {}, stem: string = opType): string {
    return this.node(opType, inputs, attrs, [stem])[0]!;
  }

  /** The model message, serialised. Graph inputs/outputs are renamed by Identity nodes when needed. */
  encode(o: {
    name: string; inputs: ValueInfo[]; outputs: (ValueInfo & { from: string })[]; metadata: Record<string, string>; docString?: string;
  }): Uint8Array {
    const outputNodes = o.outputs.map((out) => ({ opType: 'Identity', input: [out.from], output: [out.name], name: `${out.name}_output` }));
    const model: onnxProto.onnx.IModelProto = {
      irVersion: IR_VERSION,
      opsetImport: [{ domain: '', version: OPSET }],
      producerName: 'weakseg',
      producerVersion: '0.1.0',
      docString: o.docString ?? '',
      graph: {
        name: o.name,
        node: [...this.#nodes, ...outputNodes],
        initializer: this.#initializers,
        input: o.inputs.map(valueInfo),
        output: o.outputs.map(valueInfo),
      },
      metadataProps: Object.entries(o.metadata).map(([key, value]) => ({ key, value })),
    };
    return onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish();
  }

}

/** Reads a model's metadata_props back (tests, `weakseg predict` on an .onnx file). */
export function readOnnxMetadata(bytes: Uint8Array): Record<string, string> {
  const model = onnx.ModelProto.decode(bytes);
  return Object.fromEntries(model.metadataProps.map((p) => [p.key, p.value]));
}

/** The opset and the operator types a model uses (tests). */
export function describeOnnx(bytes: Uint8Array): { opset: number; ops: string[]; inputs: string[]; outputs: string[] } {
  const model = onnx.ModelProto.decode(bytes);
  const graph = model.graph as onnxProto.onnx.GraphProto;
  return {
    opset: Number(model.opsetImport.find((o) => !o.domain)?.version ?? 0),
    ops: [...new Set(graph.node.map((n) => String(n.opType)))].sort(),
    inputs: graph.input.map((i) => String(i.name)),
    outputs: graph.output.map((i) => String(i.name)),
  };
}
