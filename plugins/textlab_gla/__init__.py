"""textlab gla: a Gated Linear Attention character language model that trains and generates on a CPU."""
