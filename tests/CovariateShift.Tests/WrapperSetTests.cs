using System.Reflection;
using CovariateShift.Hooks;
using CovariateShift.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Tests;

/// <summary>The field-swapping machinery on its own (no monitor): what is swapped, what is not, and that it all goes back.</summary>
public sealed class WrapperSetTests
{
    private static List<(string Name, nn.Module<Tensor, Tensor> Module)> Leaves(nn.Module model) =>
        model.named_modules().Where(m => !m.module.children().Any()).Select(m => (m.name, (nn.Module<Tensor, Tensor>)m.module)).ToList();

    /// <summary>Every instance field of the module (base classes included) that holds a module, by declaring type and name.</summary>
    private static Dictionary<string, object?> ModuleFields(object owner)
    {
        var result = new Dictionary<string, object?>();
        for (var t = owner.GetType(); t is not null && t.Assembly == typeof(WrapperSetTests).Assembly; t = t.BaseType)
        {
            foreach (var f in t.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
            {
                if (f.GetValue(owner) is nn.Module) result[$"{t.Name}.{f.Name}"] = f.GetValue(owner);
            }
        }
        return result;
    }

    [Fact]
    public void MNIST_style_fields_are_swapped_and_the_very_same_objects_are_put_back()
    {
        using var scope = NewDisposeScope();
        var model = new MnistStyleNet();
        var before = ModuleFields(model);
        var leaves = Leaves(model);
        Assert.Equal(MnistStyleNet.CallOrder.Order(), leaves.Select(l => l.Name).Order());
        var modulesBefore = model.named_modules().ToList();
        var parametersBefore = model.parameters().ToList();

        var set = WrapperSet.Install(model, leaves.Select(l => new WrapRequest(l.Name, l.Module, _ => { })).ToList());
        Assert.Empty(set.Fallbacks);
        Assert.Equal(leaves.Select(l => l.Name), set.WrappedLayers);
        // Nothing is swapped until armed (the monitor arms on recorded steps only).
        Assert.All(before, kv => Assert.Same(kv.Value, ModuleFields(model)[kv.Key]));
        set.Armed = true;
        var during = ModuleFields(model);
        foreach (var (key, original) in before)
        {
            var wrapper = Assert.IsType<RecordingWrapper>(during[key]);
            Assert.Same(original, wrapper.Inner);
        }
        // The registration is untouched: the same module and parameter objects, no wrapper anywhere.
        Assert.Equal(modulesBefore.Select(m => m.name), model.named_modules().Select(m => m.name));
        Assert.All(modulesBefore.Zip(model.named_modules()), p => Assert.Same(p.First.module, p.Second.module));
        Assert.DoesNotContain(model.modules(), m => m is RecordingWrapper);
        Assert.All(parametersBefore.Zip(model.parameters()), p => Assert.Same(p.First, p.Second));

        set.Armed = false;
        Assert.All(before, kv => Assert.Same(kv.Value, ModuleFields(model)[kv.Key]));
        set.Armed = true;
        set.Dispose();
        var after = ModuleFields(model);
        Assert.Equal(before.Keys, after.Keys);
        Assert.All(before, kv => Assert.Same(kv.Value, after[kv.Key]));
    }

    [Fact]
    public void Forward_through_a_wrapper_delivers_the_layer_output_and_call_keeps_the_inner_hooks_as_they_were()
    {
        using var scope = NewDisposeScope();
        var model = new ConcreteFieldNet(useCall: true);
        var act = Leaves(model).Single(l => l.Name == "act").Module;
        var seen = new List<Tensor>();
        int userHookCalls = 0;
        act.register_forward_hook((_, _, o) => { userHookCalls++; return o; });
        using var set = WrapperSet.Install(model, [new WrapRequest("act", act, o => seen.Add(o.detach().clone()))]);
        set.Armed = true;
        var x = randn(5, 4);
        var y = model.forward(x);   // ConcreteFieldNet calls act.forward(): the wrapper delegates to forward(), no hook
        Assert.Single(seen);
        Assert.Equal(0, userHookCalls);
        using (no_grad())
        {
            var direct = act.forward(model.named_children().Single(c => c.name == "fc").module is nn.Module<Tensor, Tensor> fc ? fc.forward(x) : throw new InvalidOperationException());
            Assert.True(direct.allclose(seen[0]));
            Assert.True(direct.allclose(y));
        }

        // Through call() (what a parent that calls act.call(x) reaches): the inner module's hooks fire as before.
        var wrapper = (RecordingWrapper)ModuleFields(model)["ConcreteFieldNet.act"]!;
        // The wrapper leaves such a call to the inner module's hooks (the monitor's hook is armed with the wrapper).
        wrapper.call(randn(2, 3));
        Assert.Equal(1, userHookCalls);
        Assert.Single(seen);
        set.Armed = false;
        model.forward(x);
        Assert.Single(seen);   // disarmed: delegates only
    }

    [Fact]
    public void A_field_typed_with_a_concrete_class_falls_back_with_the_layer_name_and_why()
    {
        using var scope = NewDisposeScope();
        var model = new ConcreteFieldNet(useCall: false);
        var leaves = Leaves(model);
        using var set = WrapperSet.Install(model, leaves.Select(l => new WrapRequest(l.Name, l.Module, _ => { })).ToList());
        Assert.Equal(["act"], set.WrappedLayers);
        var fallback = Assert.Single(set.Fallbacks);
        Assert.Equal("fc", fallback.Layer);
        var line = fallback.Message;
        Assert.StartsWith("fc (Linear): ConcreteFieldNet.fc is typed Linear, which cannot hold a recording wrapper", line);
        Assert.Contains("call()", line);
        Assert.IsType<TorchSharp.Modules.Linear>(ModuleFields(model)["ConcreteFieldNet.fc"]);
    }

    [Fact]
    public void ModuleList_ModuleDict_and_base_class_fields_are_swapped_Sequential_children_are_left_to_the_hook()
    {
        using var scope = NewDisposeScope();
        var model = new MixedNet();
        var leaves = Leaves(model);
        Assert.Equal(MixedNet.Leaves.Order(), leaves.Select(l => l.Name).Order());
        var blocks = (TorchSharp.Modules.ModuleList<nn.Module<Tensor, Tensor>>)model.named_children().Single(c => c.name == "blocks").module;
        var heads = (TorchSharp.Modules.ModuleDict<nn.Module<Tensor, Tensor>>)model.named_children().Single(c => c.name == "heads").module;
        var block0 = blocks[0];
        var head = heads["out"];
        var stateBefore = model.state_dict().Keys.ToList();

        var set = WrapperSet.Install(model, leaves.Select(l => new WrapRequest(l.Name, l.Module, _ => { })).ToList());
        set.Armed = true;
        Assert.Empty(set.Fallbacks);
        Assert.Equal(["act", "blocks.0", "blocks.1", "heads.out", "mid", "stem"], set.WrappedLayers.Order());
        Assert.Same(block0, Assert.IsType<RecordingWrapper>(blocks[0]).Inner);
        Assert.Same(head, Assert.IsType<RecordingWrapper>(heads["out"]).Inner);
        Assert.Same(block0, blocks.named_children().First().module);   // the container's registration is the original
        Assert.Same(leaves.Single(l => l.Name == "stem").Module, ((RecordingWrapper)ModuleFields(model)["StemBase.stem"]!).Inner);
        Assert.Equal(stateBefore, model.state_dict().Keys);

        set.Dispose();
        Assert.Same(block0, blocks[0]);
        Assert.Same(head, heads["out"]);
        Assert.Same(leaves.Single(l => l.Name == "stem").Module, ModuleFields(model)["StemBase.stem"]);
    }

    [Fact]
    public void A_slot_the_user_refilled_meanwhile_is_left_alone_and_the_inner_module_survives_the_wrappers_disposal()
    {
        using var scope = NewDisposeScope();
        var model = new MnistStyleNet();
        var leaves = Leaves(model);
        var fc2 = leaves.Single(l => l.Name == "fc2").Module;
        var set = WrapperSet.Install(model, [new WrapRequest("fc2", fc2, _ => { })]);
        set.Armed = true;
        var field = typeof(MnistStyleNet).GetField("fc2", BindingFlags.Instance | BindingFlags.NonPublic)!;
        var replacement = nn.Linear(32, 10);
        field.SetValue(model, replacement);
        set.Dispose();
        Assert.Same(replacement, field.GetValue(model));
        using var y = ((nn.Module<Tensor, Tensor>)fc2).forward(randn(2, 32));   // the inner module was not disposed
        Assert.Equal([2L, 10L], y.shape);
    }
}
