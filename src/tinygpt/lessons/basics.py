"""Lesson: the pieces under every neural network, with numbers small enough to check by hand.

Read this file from top to bottom, or run it (`tinygpt lesson basics`, or
`python -m tinygpt.lessons.basics`) and follow the printout. It builds up in six steps:

1. One neuron: multiply each input by its weight, add a bias, pass the sum through ReLU.
2. A 2-2-1 network: two such neurons side by side (the hidden layer) feed one output neuron.
3. Squared-error loss: one number that says how far the output is from the target.
4. The chain rule by hand: how much the loss changes when one weight moves, computed factor by
   factor, then checked against PyTorch's autograd, which does the same thing automatically.
5. Gradient descent on L(w) = (w - 3)^2: step against the slope, again and again, and w walks to 3.
6. Training: the same 2-2-1 network, updated with SGD (learning rate 0.1) for 10 steps, so that its
   output moves toward the target 1.0 while the loss falls.

A GPT is these same pieces at a much larger scale: millions of weights instead of nine, and a
loss over next-token predictions instead of one target, but the same forward pass, loss, backward
pass and update.

The weights of the 2-2-1 network are fixed numbers chosen so every intermediate value is short:

    inputs         x1 = 0.8, x2 = 0.2
    hidden h1      weights 0.6, -0.4, bias 0.1   (the neuron of step 1)    -> 0.5
    hidden h2      weights 0.2,  0.7, bias 0.0                             -> 0.3
    output y       weights 0.9, -0.5, bias 0.2   (no activation)           -> 0.5
    target         1.0, so the squared-error loss is (0.5 - 1.0)^2 = 0.25

The output neuron has no ReLU so that it can produce any number, including the target.
"""

import torch

# The worked example's numbers, in one place so the printout, the hand calculation and the
# autograd check all start from the same values.
INPUTS = (0.8, 0.2)
HIDDEN_WEIGHTS = ((0.6, -0.4), (0.2, 0.7))  # one row per hidden neuron: (from x1, from x2)
HIDDEN_BIASES = (0.1, 0.0)
OUTPUT_WEIGHTS = (0.9, -0.5)  # (from h1, from h2)
OUTPUT_BIAS = 0.2
TARGET = 1.0

GD_START = 1.0
GD_LR = 0.1
GD_STEPS = 20

SGD_LR = 0.1
SGD_STEPS = 10


def _factor(v: float) -> str:
    """A number to print after a `*`: negatives in brackets, so "0.2*(-0.4)" and never "0.2*-0.4"."""
    return f"({v})" if v < 0 else f"{v}"


def _sum_text(terms) -> str:
    """Write a sum the way a person would: "0.48 - 0.08 + 0.1", not "0.48 + -0.08 + 0.1"."""
    text = f"{terms[0]}"
    for t in terms[1:]:
        text += f" - {-t}" if t < 0 else f" + {t}"
    return text


def relu(z: float) -> float:
    """Keep positive numbers, turn negative ones into 0: the simplest useful non-linearity."""
    return max(0.0, z)


def neuron(inputs, weights, bias: float) -> tuple[float, float]:
    """One neuron: the weighted sum of its inputs plus a bias (z), then ReLU. Returns (z, relu(z))."""
    z = sum(x * w for x, w in zip(inputs, weights)) + bias
    return z, relu(z)


def forward(inputs=INPUTS) -> dict:
    """The 2-2-1 network's forward pass in plain Python, keeping every intermediate value."""
    z1, h1 = neuron(inputs, HIDDEN_WEIGHTS[0], HIDDEN_BIASES[0])
    z2, h2 = neuron(inputs, HIDDEN_WEIGHTS[1], HIDDEN_BIASES[1])
    y = OUTPUT_WEIGHTS[0] * h1 + OUTPUT_WEIGHTS[1] * h2 + OUTPUT_BIAS
    return {"z1": z1, "h1": h1, "z2": z2, "h2": h2, "y": y}


def squared_error(y: float, target: float) -> float:
    """Squared error: always >= 0, zero only when the output hits the target, and smooth to differentiate."""
    return (y - target) ** 2


def _network_parameters() -> dict[str, torch.Tensor]:
    """The same weights as torch tensors that record gradients. float64 so that the hand
    calculation (Python floats are 64-bit) and autograd agree to the last few digits."""

    def param(values) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float64, requires_grad=True)

    return {
        "W1": param(HIDDEN_WEIGHTS),  # (2, 2): row i holds hidden neuron i's weights
        "b1": param(HIDDEN_BIASES),  # (2,)
        "W2": param(OUTPUT_WEIGHTS),  # (2,)
        "b2": param(OUTPUT_BIAS),  # ()
    }


def _torch_forward(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The same forward pass as `forward`, written with tensors so autograd can run it backwards."""
    h = torch.relu(params["W1"] @ x + params["b1"])  # (2,) hidden activations
    return params["W2"] @ h + params["b2"]  # () the output y


def run(out=print) -> dict:
    """Print the lesson step by step and return its key numbers."""
    x1, x2 = INPUTS

    # ---- 1. One neuron -------------------------------------------------------------------
    out("Step 1. One neuron")
    (w1, w2), b = HIDDEN_WEIGHTS[0], HIDDEN_BIASES[0]
    z, a = neuron(INPUTS, (w1, w2), b)
    out(f"  inputs {x1} and {x2}, weights {w1} and {w2}, bias {b}")
    products = [round(x1 * w1, 4), round(x2 * w2, 4), b]
    out(f"  weighted sum z = {x1}*{_factor(w1)} + {x2}*{_factor(w2)} + {b} = {_sum_text(products)} = {z:.2f}")
    out(f"  ReLU keeps positive numbers: output = max(0, {z:.2f}) = {a:.2f}")

    # ---- 2. A 2-2-1 network --------------------------------------------------------------
    out("")
    out("Step 2. A 2-2-1 network: 2 inputs -> 2 hidden ReLU neurons -> 1 output")
    fw = forward()
    for i, name in enumerate(("h1", "h2")):
        (wa, wb), bb = HIDDEN_WEIGHTS[i], HIDDEN_BIASES[i]
        zi = fw["z" + name[1]]
        products = [round(x1 * wa, 4), round(x2 * wb, 4), bb]
        out(
            f"  {name} = ReLU({x1}*{_factor(wa)} + {x2}*{_factor(wb)} + {bb}) = ReLU({_sum_text(products)})"
            f" = ReLU({zi:.2f}) = {fw[name]:.2f}"
        )
    v1, v2 = OUTPUT_WEIGHTS
    c = OUTPUT_BIAS
    products = [round(v1 * fw["h1"], 4), round(v2 * fw["h2"], 4), c]
    out(
        f"  y  = {_factor(v1)}*h1 + {_factor(v2)}*h2 + {c}"
        f" = {_factor(v1)}*{fw['h1']:.2f} + {_factor(v2)}*{fw['h2']:.2f} + {c}"
        f" = {_sum_text(products)} = {fw['y']:.2f}"
    )

    # ---- 3. Squared-error loss -----------------------------------------------------------
    out("")
    out("Step 3. Squared-error loss")
    loss = squared_error(fw["y"], TARGET)
    out(f"  target {TARGET}, output {fw['y']:.2f}: loss = ({fw['y']:.2f} - {TARGET})^2 = {loss:.4f}")

    # ---- 4. The chain rule by hand, checked by autograd --------------------------------------
    # We pick the first hidden weight (x1 -> h1) because its effect on the loss passes through
    # every layer: the weight moves z1, z1 moves h1, h1 moves y, y moves the loss. The chain rule
    # says the total effect is the product of those four local slopes.
    out("")
    out("Step 4. The chain rule by hand for one weight: w = 0.6, from x1 into h1")
    dL_dy = 2 * (fw["y"] - TARGET)  # slope of (y - t)^2 with respect to y
    dy_dh1 = v1  # y depends on h1 through the output weight
    dh1_dz1 = 1.0 if fw["z1"] > 0 else 0.0  # ReLU passes slope 1 when its input is positive, else 0
    dz1_dw = x1  # z1 = x1*w + ..., so moving w by 1 moves z1 by x1
    hand_grad = dL_dy * dy_dh1 * dh1_dz1 * dz1_dw
    out(f"  dL/dy   = 2*(y - target) = 2*({fw['y']:.2f} - {TARGET}) = {dL_dy:.4f}")
    out(f"  dy/dh1  = output weight from h1 = {dy_dh1}")
    out(f"  dh1/dz1 = ReLU slope at z1 = {fw['z1']:.2f} -> {dh1_dz1}")
    out(f"  dz1/dw  = x1 = {dz1_dw}")
    out(f"  dL/dw   = {dL_dy:.4f} * {dy_dh1} * {dh1_dz1} * {dz1_dw} = {hand_grad:.4f}")

    params = _network_parameters()
    x = torch.tensor(INPUTS, dtype=torch.float64)  # (2,)
    y = _torch_forward(params, x)  # ()
    ((y - TARGET) ** 2).backward()
    autograd_grad = params["W1"].grad[0, 0].item()
    out(f"  torch autograd gives dL/dw = {autograd_grad:.4f}")
    out(
        f"  hand and autograd agree: {abs(hand_grad - autograd_grad) < 1e-6}"
        f" (difference {abs(hand_grad - autograd_grad):.1e})"
    )
    out("  autograd fills in every weight's gradient at once (W1 row i = hidden neuron i):")
    for name, p in params.items():
        out(f"    dL/d{name} = {torch.round(p.grad, decimals=4).tolist()}")

    # ---- 5. Gradient descent on L(w) = (w - 3)^2 ---------------------------------------------
    # The slope dL/dw = 2(w - 3) is negative left of 3 and positive right of it, so stepping
    # against the slope always moves w toward 3. With learning rate 0.1 each step removes 20%
    # of the remaining distance: w - 3 is multiplied by (1 - 2*0.1) = 0.8.
    out("")
    out(f"Step 5. Gradient descent on L(w) = (w - 3)^2, from w = {GD_START}, learning rate {GD_LR}")
    w = GD_START
    trajectory = [w]
    for step in range(1, GD_STEPS + 1):
        grad = 2 * (w - 3)
        w = w - GD_LR * grad
        trajectory.append(w)
        out(
            f"  step {step:2d}: slope {grad:+.4f}, w <- w - {GD_LR}*slope = {w:.4f}, L(w) = {(w - 3) ** 2:.6f}"
        )

    # ---- 6. Training the 2-2-1 network with SGD ----------------------------------------------
    # Each step is the whole recipe: forward pass, loss, backward pass (autograd fills .grad),
    # then SGD moves every weight a little against its gradient.
    out("")
    out(f"Step 6. Train the 2-2-1 network toward target {TARGET} with SGD, learning rate {SGD_LR}")
    # The update is written out rather than taken from torch.optim.SGD (which does exactly
    # this) so the rule is visible: weight <- weight - learning_rate * gradient.
    params = _network_parameters()
    sgd_losses = []
    sgd_outputs = []
    for step in range(1, SGD_STEPS + 1):
        y = _torch_forward(params, x)  # ()
        step_loss = (y - TARGET) ** 2  # ()
        step_loss.backward()
        with torch.no_grad():  # the update itself is not part of the function being differentiated
            for p in params.values():
                p -= SGD_LR * p.grad
                p.grad = None  # backward adds into .grad, so clear it before the next step
        sgd_losses.append(step_loss.item())
        sgd_outputs.append(y.item())
        out(f"  step {step:2d}: output {y.item():.6f}, loss {step_loss.item():.3e}")
    with torch.no_grad():
        final_output = _torch_forward(params, x).item()
    out(
        f"  after {SGD_STEPS} steps the output is {final_output:.6f}"
        f" (loss {squared_error(final_output, TARGET):.3e}), up from {fw['y']:.2f}"
    )

    return {
        "neuron_z": z,
        "neuron_output": a,
        "hidden": (fw["h1"], fw["h2"]),
        "network_output": fw["y"],
        "loss": loss,
        "hand_grad": hand_grad,
        "autograd_grad": autograd_grad,
        "gd_trajectory": trajectory,
        "sgd_losses": sgd_losses,
        "sgd_outputs": sgd_outputs,
        "sgd_final_output": final_output,
    }


if __name__ == "__main__":
    run()
