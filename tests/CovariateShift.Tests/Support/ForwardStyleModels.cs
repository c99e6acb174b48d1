using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace CovariateShift.Tests.Support;

// Test models written the way user code is: fields are registered submodules, so their names are the state_dict keys
// (no underscore prefix, as in TorchSharp's own examples).
#pragma warning disable IDE1006

/// <summary>
/// Written as TorchSharp's MNIST example (dotnet/TorchSharpExamples) is: non-readonly fields typed
/// <c>Module&lt;Tensor, Tensor&gt;</c> with initializers, RegisterComponents() in the constructor, and every child called
/// with <c>forward()</c>. Sized for 1x28x28 input.
/// </summary>
internal sealed class MnistStyleNet : Module<Tensor, Tensor>
{
    private Module<Tensor, Tensor> conv1 = Conv2d(1, 4, 3);
    private Module<Tensor, Tensor> conv2 = Conv2d(4, 8, 3);
    private Module<Tensor, Tensor> fc1 = Linear(8 * 12 * 12, 32);
    private Module<Tensor, Tensor> fc2 = Linear(32, 10);
    private Module<Tensor, Tensor> pool1 = MaxPool2d(kernel_size: [2, 2]);
    private Module<Tensor, Tensor> relu1 = ReLU();
    private Module<Tensor, Tensor> relu2 = ReLU();
    private Module<Tensor, Tensor> relu3 = ReLU();
    private Module<Tensor, Tensor> dropout1 = Dropout(0.25);
    private Module<Tensor, Tensor> dropout2 = Dropout(0.5);
    private Module<Tensor, Tensor> flatten = Flatten();
    private Module<Tensor, Tensor> logsm = LogSoftmax(1);

    public MnistStyleNet() : base(nameof(MnistStyleNet)) => RegisterComponents();

    /// <summary>Leaf names in the order forward() runs them, and in registration (field) order.</summary>
    public static readonly string[] CallOrder =
        ["conv1", "relu1", "conv2", "relu2", "pool1", "dropout1", "flatten", "fc1", "relu3", "dropout2", "fc2", "logsm"];

    public override Tensor forward(Tensor input)
    {
        var l11 = conv1.forward(input);
        var l12 = relu1.forward(l11);
        var l21 = conv2.forward(l12);
        var l22 = relu2.forward(l21);
        var l23 = pool1.forward(l22);
        var l24 = dropout1.forward(l23);
        var x = flatten.forward(l24);
        var l31 = fc1.forward(x);
        var l32 = relu3.forward(l31);
        var l33 = dropout2.forward(l32);
        var l41 = fc2.forward(l33);
        return logsm.forward(l41);
    }
}

/// <summary>A readonly field typed with a concrete class (cannot hold a wrapper) next to one typed Module&lt;Tensor, Tensor&gt;.</summary>
internal sealed class ConcreteFieldNet : Module<Tensor, Tensor>
{
    private readonly Linear fc;
    private readonly Module<Tensor, Tensor> act;
    private readonly bool _useCall;

    public ConcreteFieldNet(bool useCall) : base(nameof(ConcreteFieldNet))
    {
        fc = Linear(4, 3);
        act = Tanh();
        _useCall = useCall;
        RegisterComponents();
    }

    public override Tensor forward(Tensor input) => act.forward(_useCall ? fc.call(input) : fc.forward(input));
}

/// <summary>A private field in a base class, read by the base class's helper.</summary>
internal abstract class StemBase : Module<Tensor, Tensor>
{
    private readonly Module<Tensor, Tensor> stem = Linear(4, 6);

    protected StemBase(string name) : base(name)
    {
    }

    protected Tensor Stem(Tensor x) => stem.forward(x);
}

/// <summary>
/// Mixed calling styles: a Sequential child (calls its children with call()), a ModuleList iterated with forward(), a
/// ModuleDict entry called with forward(), a layer called with call(), and a shared activation called twice per pass,
/// once with forward() and once with call().
/// </summary>
internal sealed class MixedNet : StemBase
{
    private readonly Module<Tensor, Tensor> act = ReLU();
    private readonly Module<Tensor, Tensor> seq = Sequential(("lin", Linear(6, 6)), ("norm", LayerNorm(6)));
    private readonly ModuleList<Module<Tensor, Tensor>> blocks = new(Linear(6, 6), Linear(6, 6));
    private readonly ModuleDict<Module<Tensor, Tensor>> heads = new();
    private readonly Module<Tensor, Tensor> mid = Linear(6, 6);

    public MixedNet() : base(nameof(MixedNet))
    {
        heads.Add(("out", Linear(6, 3)));
        RegisterComponents();
    }

    /// <summary>Every leaf (dotted names).</summary>
    public static readonly string[] Leaves =
        ["act", "seq.lin", "seq.norm", "blocks.0", "blocks.1", "heads.out", "mid", "stem"];

    public override Tensor forward(Tensor input)
    {
        var x = act.forward(Stem(input));   // first use of the shared layer: forward()
        x = seq.call(x);
        foreach (var block in blocks) x = block.forward(x);
        x = act.call(mid.call(x));          // second use: call()
        return heads["out"].forward(x);
    }
}
#pragma warning restore IDE1006
