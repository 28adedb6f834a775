"""LiteRT (.tflite) models run like Keras models: float images in, float probabilities out."""
import numpy as np

from app.runtime.native_logs import quiet_native_stderr


class LiteRTModel:
    """A segmentation .tflite file used like a Keras model, on the LiteRT interpreter.

    Args:
        path: str. The .tflite file (image input, probabilities output).
        num_threads: int. CPU threads of the interpreter. Defaults to None (the runtime's choice).

    Example:
    >>> model = LiteRTModel("runs/x/export/model_int8.tflite", num_threads=1)
    >>> model.predict_on_batch(np.zeros((2, *model.input_size, model.channels), "float32")).shape
    (2, 256, 256, 2)
    """

    def __init__(self, path, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        self.path = str(path)
        with quiet_native_stderr():
            self._interpreter = Interpreter(model_path=self.path, num_threads=num_threads)
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        batch, height, width, self.channels = (int(n) for n in self._input["shape"])
        self.input_size = (height, width)
        self.num_classes = int(self._output["shape"][-1])
        self._batch = batch

    def predict_on_batch(self, images):
        """Probabilities (B, H, W, num_classes) float32 of float images (B, H, W, C) in [0, 1]."""
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[1:] != (*self.input_size, self.channels):
            raise ValueError(f"{self.path} takes images of shape (batch, {self.input_size[0]}, "
                             f"{self.input_size[1]}, {self.channels}): got {images.shape}")
        if self._batch == 1:
            return np.concatenate([self._run(image[None]) for image in images])
        if images.shape[0] != self._input["shape"][0]:
            self._interpreter.resize_tensor_input(self._input["index"], images.shape)
            self._interpreter.allocate_tensors()
            self._input = self._interpreter.get_input_details()[0]
            self._output = self._interpreter.get_output_details()[0]
        return self._run(images)

    def _run(self, images):
        self._interpreter.set_tensor(self._input["index"], _quantize(images, self._input))
        self._interpreter.invoke()
        output = self._interpreter.get_tensor(self._output["index"])
        scale, zero_point = self._output["quantization"]
        if np.issubdtype(output.dtype, np.integer):
            output = (output.astype(np.float32) - zero_point) * scale
        return output.astype(np.float32)


def _quantize(images, details):
    dtype = details["dtype"]
    if not np.issubdtype(dtype, np.integer):
        return images.astype(dtype)
    scale, zero_point = details["quantization"]
    limits = np.iinfo(dtype)
    return np.clip(np.round(images / scale + zero_point), limits.min, limits.max).astype(dtype)
